//! `meshkeeper-operator`: turns the Mesh into a running mesh installation.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("not wired yet")
}
