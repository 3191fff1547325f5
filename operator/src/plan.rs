//! Which MeshRevisions a Mesh wants. The active revision carries the Mesh's
//! current settings; every other revision of the Mesh keeps the settings it
//! was created with (so an old revision keeps running unchanged during a
//! canary) and only follows tag moves. Pure.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use meshkeeper_crds::meshkeeper::mesh::Mesh;
use meshkeeper_crds::meshkeeper::mesh_revision::{MeshRevision, MeshRevisionSpec};

use crate::names::{self, MANAGED_BY, MANAGED_BY_LABEL};

/// Label on MeshRevisions naming their Mesh.
pub const MESH_LABEL: &str = "meshkeeper.io/mesh";

/// The revision new injections use: named after the Mesh in place, after
/// the Mesh and its version when revision based.
pub fn active_revision(mesh: &Mesh) -> String {
    let strategy = mesh
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.kind)
        .unwrap_or_default();
    names::revision_name(&mesh.name_any(), &mesh.spec.version, strategy)
}

/// The MeshRevisions of `mesh` as they should be: the active one from the
/// Mesh, the others as they are, each listing the tags that point at it
/// (`tags`: tag → revision).
pub fn desired_revisions(
    mesh: &Mesh,
    existing: &[MeshRevision],
    tags: &BTreeMap<String, String>,
) -> Vec<MeshRevision> {
    let active = active_revision(mesh);
    let tags_of = |revision: &str| {
        let pointing: Vec<String> = tags
            .iter()
            .filter(|(_, target)| *target == revision)
            .map(|(tag, _)| tag.clone())
            .collect();
        (!pointing.is_empty()).then_some(pointing)
    };
    let mut revisions = vec![revision(
        mesh,
        &active,
        MeshRevisionSpec {
            mesh: mesh.name_any(),
            version: mesh.spec.version.clone(),
            tags: tags_of(&active),
            config: mesh.spec.config.clone(),
        },
    )];
    for old in existing {
        let name = old.name_any();
        if name == active || old.spec.mesh != mesh.name_any() {
            continue;
        }
        let spec = MeshRevisionSpec {
            tags: tags_of(&name),
            ..old.spec.clone()
        };
        revisions.push(revision(mesh, &name, spec));
    }
    revisions
}

fn revision(mesh: &Mesh, name: &str, spec: MeshRevisionSpec) -> MeshRevision {
    MeshRevision {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
                (MESH_LABEL.to_owned(), mesh.name_any()),
            ])),
            owner_references: mesh_owner(mesh).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// Owner reference to the Mesh (deleting the Mesh collects what it owns).
pub fn mesh_owner(mesh: &Mesh) -> Option<OwnerReference> {
    mesh.controller_owner_ref(&())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshkeeper_crds::meshkeeper::mesh::{MeshSpec, UpdateStrategy, UpdateStrategyType};

    fn mesh(version: &str, strategy: UpdateStrategyType) -> Mesh {
        let mut mesh = Mesh::new(
            "default",
            MeshSpec {
                version: version.into(),
                update_strategy: Some(UpdateStrategy {
                    kind: Some(strategy),
                    ..UpdateStrategy::default()
                }),
                ..MeshSpec::default()
            },
        );
        mesh.metadata.uid = Some("uid-1".into());
        mesh
    }

    #[test]
    fn in_place_has_one_revision_named_after_the_mesh() {
        let mesh = mesh("1.2.0", UpdateStrategyType::InPlace);
        let revisions = desired_revisions(&mesh, &[], &BTreeMap::new());
        assert_eq!(revisions.len(), 1);
        assert_eq!(revisions[0].name_any(), "default");
        assert_eq!(revisions[0].spec.version, "1.2.0");
        let owner = &revisions[0].metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Mesh", "uid-1"));
    }

    #[test]
    fn revision_based_keeps_old_revisions_frozen_but_moves_tags() {
        let old_mesh = mesh("1.1.0", UpdateStrategyType::RevisionBased);
        let old = desired_revisions(&old_mesh, &[], &BTreeMap::new()).remove(0);
        assert_eq!(old.name_any(), "default-1-1-0");

        let mut new_mesh = mesh("1.2.0", UpdateStrategyType::RevisionBased);
        new_mesh.spec.config.root_namespace = Some("changed".into());
        let tags = BTreeMap::from([("prod".to_owned(), "default-1-1-0".to_owned())]);
        let revisions = desired_revisions(&new_mesh, std::slice::from_ref(&old), &tags);
        let names: Vec<String> = revisions.iter().map(|r| r.name_any()).collect();
        assert_eq!(names, ["default-1-2-0", "default-1-1-0"]);
        assert_eq!(
            revisions[0].spec.config.root_namespace.as_deref(),
            Some("changed")
        );
        assert_eq!(
            revisions[1].spec.config.root_namespace, None,
            "old revision keeps its settings"
        );
        assert_eq!(revisions[1].spec.version, "1.1.0");
        assert_eq!(revisions[1].spec.tags, Some(vec!["prod".to_owned()]));
        assert_eq!(revisions[0].spec.tags, None);
    }

    #[test]
    fn revisions_of_other_meshes_are_left_alone() {
        let mut foreign = desired_revisions(
            &mesh("1.0.0", UpdateStrategyType::RevisionBased),
            &[],
            &BTreeMap::new(),
        )
        .remove(0);
        foreign.spec.mesh = "other".into();
        let revisions = desired_revisions(
            &mesh("1.2.0", UpdateStrategyType::InPlace),
            &[foreign],
            &BTreeMap::new(),
        );
        assert_eq!(revisions.len(), 1);
    }
}
