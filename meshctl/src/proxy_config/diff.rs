//! What a set of manifests changes in a proxy's configuration: per
//! resource type, the resources added, removed and changed (by name); for
//! a changed route configuration, the virtual hosts and routes that
//! differ; for changed endpoints, the addresses; for anything else, the
//! fields. Both sides are Envoy JSON (`ProxyConfig::to_json`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Part;
use super::describe;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    Added,
    Removed,
    Changed,
}

impl Sign {
    fn symbol(self) -> &'static str {
        match self {
            Sign::Added => "+",
            Sign::Removed => "-",
            Sign::Changed => "~",
        }
    }
}

/// One line of the diff, with what it holds (virtual host → routes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub sign: Sign,
    pub text: String,
    pub entries: Vec<Entry>,
}

impl Entry {
    fn new(sign: Sign, text: String) -> Self {
        Entry {
            sign,
            text,
            entries: Vec::new(),
        }
    }
}

/// The changes to one resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// `listeners`, `routes`, `clusters`, `endpoints`.
    pub kind: &'static str,
    /// One entry per resource added, removed or changed, by name.
    pub entries: Vec<Entry>,
}

impl Section {
    fn count(&self, sign: Sign) -> usize {
        self.entries.iter().filter(|e| e.sign == sign).count()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub sections: Vec<Section>,
}

/// The resource types `part` covers: key in the JSON and the field that
/// names each resource.
fn kinds(part: Part) -> Vec<(&'static str, &'static str)> {
    let all = [
        (Part::Listeners, "listeners", "name"),
        (Part::Routes, "routes", "name"),
        (Part::Clusters, "clusters", "name"),
        (Part::Endpoints, "endpoints", "cluster_name"),
    ];
    all.into_iter()
        .filter(|(p, ..)| part == Part::All || part == *p)
        .map(|(_, kind, key)| (kind, key))
        .collect()
}

/// The differences between `before` and `after` for the types of `part`.
pub fn compare(before: &Value, after: &Value, part: Part) -> Diff {
    let sections = kinds(part)
        .into_iter()
        .map(|(kind, key)| Section {
            kind,
            entries: compare_named(&before[kind], &after[kind], key, |a, b| details(kind, a, b)),
        })
        .collect();
    Diff { sections }
}

/// Resources by their name, in name order.
fn by_name<'a>(list: &'a Value, key: &str) -> BTreeMap<&'a str, &'a Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|v| (v[key].as_str().unwrap_or_default(), v))
        .collect()
}

/// Added, removed and changed members of two lists keyed by `key`; a
/// changed member's entries come from `inner`.
fn compare_named(
    before: &Value,
    after: &Value,
    key: &str,
    inner: impl Fn(&Value, &Value) -> Vec<Entry>,
) -> Vec<Entry> {
    let (old, new) = (by_name(before, key), by_name(after, key));
    let mut names: Vec<&str> = old.keys().chain(new.keys()).copied().collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| match (old.get(name), new.get(name)) {
            (None, Some(_)) => Some(Entry::new(Sign::Added, name.to_owned())),
            (Some(_), None) => Some(Entry::new(Sign::Removed, name.to_owned())),
            (Some(a), Some(b)) if a != b => Some(Entry {
                sign: Sign::Changed,
                text: name.to_owned(),
                entries: inner(a, b),
            }),
            _ => None,
        })
        .collect()
}

fn details(kind: &str, a: &Value, b: &Value) -> Vec<Entry> {
    match kind {
        "routes" => compare_named(
            &a["virtual_hosts"],
            &b["virtual_hosts"],
            "name",
            host_details,
        ),
        "endpoints" => address_changes(a, b),
        _ => field_changes(a, b),
    }
}

/// `fields changed: a, b` for two objects (one level into objects both
/// sides have, so `route.timeout` rather than `route`).
fn field_changes(a: &Value, b: &Value) -> Vec<Entry> {
    let fields = changed_fields(a, b, "");
    if fields.is_empty() {
        return Vec::new();
    }
    vec![Entry::new(
        Sign::Changed,
        format!("fields changed: {}", fields.join(", ")),
    )]
}

fn changed_fields(a: &Value, b: &Value, prefix: &str) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        let field = |m: &'_ serde_json::Map<String, Value>| m.get(key.as_str()).cloned();
        let (x, y) = (
            field(a).unwrap_or(Value::Null),
            field(b).unwrap_or(Value::Null),
        );
        if x == y {
            continue;
        }
        let name = format!("{prefix}{key}");
        match (x.is_object() && y.is_object(), prefix.is_empty()) {
            (true, true) => out.extend(changed_fields(&x, &y, &format!("{name}."))),
            _ => out.push(name),
        }
    }
    out
}

/// The routes of a changed virtual host: in order, those only before
/// (`-`), only after (`+`), and those whose match stayed but whose action
/// or options changed (`~`).
fn host_details(a: &Value, b: &Value) -> Vec<Entry> {
    let empty = Vec::new();
    let old = a["routes"].as_array().unwrap_or(&empty);
    let new = b["routes"].as_array().unwrap_or(&empty);
    let mut out = route_changes(old, new);
    if out.is_empty() {
        let mut host_a = a.clone();
        let mut host_b = b.clone();
        for h in [&mut host_a, &mut host_b] {
            if let Some(o) = h.as_object_mut() {
                o.remove("routes");
            }
        }
        out = field_changes(&host_a, &host_b);
    }
    out
}

fn route_text(route: &Value) -> String {
    format!(
        "{} → {}",
        describe::route_match(&route["match"]),
        describe::route_action(route)
    )
}

enum Op<'a> {
    Same,
    Removed(&'a Value),
    Added(&'a Value),
}

/// The longest common subsequence of two route lists, as edit operations.
fn edit_script<'a>(old: &'a [Value], new: &'a [Value]) -> Vec<Op<'a>> {
    let (n, m) = (old.len(), new.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if old[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut ops) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            ops.push(Op::Same);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(Op::Added(&new[j]));
            j += 1;
        } else {
            ops.push(Op::Removed(&old[i]));
            i += 1;
        }
    }
    ops
}

fn route_changes(old: &[Value], new: &[Value]) -> Vec<Entry> {
    let ops = edit_script(old, new);
    // A removed route and an added one with the same match are one route
    // that changed: `twin[i]` is the added op paired with removed op `i`.
    let mut twin: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let Op::Removed(r) = op else { continue };
        let found = ops.iter().enumerate().position(|(j, other)| {
            matches!(other, Op::Added(a) if a["match"] == r["match"])
                && !twin.values().any(|&taken| taken == j)
        });
        if let Some(j) = found {
            twin.insert(i, j);
        }
    }
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Same => {}
            Op::Removed(r) => match twin.get(&i).and_then(|&j| ops.get(j)) {
                Some(Op::Added(a)) => out.push(changed_route(r, a)),
                _ => out.push(Entry::new(Sign::Removed, route_text(r))),
            },
            Op::Added(a) => {
                if !twin.values().any(|&j| j == i) {
                    out.push(Entry::new(Sign::Added, route_text(a)));
                }
            }
        }
    }
    out
}

fn changed_route(old: &Value, new: &Value) -> Entry {
    let (from, to) = (describe::route_action(old), describe::route_action(new));
    let what = if from == to {
        format!(
            "fields changed: {}",
            changed_fields(old, new, "").join(", ")
        )
    } else {
        format!("was {from}")
    };
    Entry::new(Sign::Changed, format!("{} ({what})", route_text(new)))
}

/// Endpoint addresses (`ip:port`) added and removed.
fn address_changes(a: &Value, b: &Value) -> Vec<Entry> {
    let (old, new) = (addresses(a), addresses(b));
    let removed = old
        .iter()
        .filter(|x| !new.contains(x))
        .map(|x| Entry::new(Sign::Removed, x.clone()));
    let added = new
        .iter()
        .filter(|x| !old.contains(x))
        .map(|x| Entry::new(Sign::Added, x.clone()));
    let out: Vec<Entry> = removed.chain(added).collect();
    if out.is_empty() {
        field_changes(a, b)
    } else {
        out
    }
}

fn addresses(assignment: &Value) -> Vec<String> {
    let localities = assignment["endpoints"].as_array().into_iter().flatten();
    localities
        .flat_map(|l| l["lb_endpoints"].as_array().into_iter().flatten())
        .map(|e| {
            let socket = &e["endpoint"]["address"]["socket_address"];
            format!(
                "{}:{}",
                socket["address"].as_str().unwrap_or("?"),
                socket["port_value"].as_u64().unwrap_or(0)
            )
        })
        .collect()
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.sections.iter().all(|s| s.entries.is_empty())
    }

    fn total(&self, sign: Sign) -> usize {
        self.sections.iter().map(|s| s.count(sign)).sum()
    }

    /// Per type a heading with the counts, then one line per resource
    /// (`+` added, `-` removed, `~` changed) with what changed beneath;
    /// a last line with the totals.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for section in &self.sections {
            out.push_str(&format!("{}: {}\n", section.kind, counts(section)));
            for entry in &section.entries {
                render_entry(entry, 1, &mut out);
            }
        }
        if self.is_empty() {
            out.push_str("no change\n");
        } else {
            out.push_str(&format!(
                "{} added, {} removed, {} changed\n",
                self.total(Sign::Added),
                self.total(Sign::Removed),
                self.total(Sign::Changed)
            ));
        }
        out
    }

    /// `{"routes": {"added": [...], "removed": [...], "changed": [{"name":
    /// …, "changes": [{"change": "+", "what": …, "changes": […]}]}]}, …}`.
    pub fn to_json(&self) -> Value {
        let sections = self.sections.iter().map(|s| {
            let names = |sign| -> Vec<&str> {
                s.entries
                    .iter()
                    .filter(|e| e.sign == sign)
                    .map(|e| e.text.as_str())
                    .collect()
            };
            let changed: Vec<Value> = s
                .entries
                .iter()
                .filter(|e| e.sign == Sign::Changed)
                .map(|e| json!({"name": e.text, "changes": entries_json(&e.entries)}))
                .collect();
            (
                s.kind.to_owned(),
                json!({"added": names(Sign::Added), "removed": names(Sign::Removed), "changed": changed}),
            )
        });
        Value::Object(sections.collect())
    }
}

fn entries_json(entries: &[Entry]) -> Vec<Value> {
    entries
        .iter()
        .map(|e| {
            let mut v = json!({"change": e.sign.symbol(), "what": e.text});
            if !e.entries.is_empty() {
                v["changes"] = Value::from(entries_json(&e.entries));
            }
            v
        })
        .collect()
}

fn counts(section: &Section) -> String {
    let parts: Vec<String> = [
        (Sign::Added, "added"),
        (Sign::Removed, "removed"),
        (Sign::Changed, "changed"),
    ]
    .into_iter()
    .map(|(sign, word)| (section.count(sign), word))
    .filter(|(n, _)| *n > 0)
    .map(|(n, word)| format!("{n} {word}"))
    .collect();
    if parts.is_empty() {
        "no change".to_owned()
    } else {
        parts.join(", ")
    }
}

fn render_entry(entry: &Entry, depth: usize, out: &mut String) {
    out.push_str(&format!(
        "{}{} {}\n",
        "    ".repeat(depth),
        entry.sign.symbol(),
        entry.text
    ));
    for child in &entry.entries {
        render_entry(child, depth + 1, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(cluster: &str, header: Option<&str>) -> Value {
        let mut m = json!({"prefix": "/"});
        if let Some(user) = header {
            m["headers"] = json!([{"name": "end-user", "string_match": {"exact": user}}]);
        }
        json!({"match": m, "route": {"cluster": cluster, "timeout": "0s"}})
    }

    fn config(routes: Vec<Value>, clusters: &[&str], endpoints: &[&str]) -> Value {
        json!({
            "listeners": [{"name": "virtualOutbound"}],
            "routes": [{"name": "9080", "virtual_hosts": [
                {"name": "reviews:9080", "routes": routes},
                {"name": "allow_any", "routes": [route("PassthroughCluster", None)]}]}],
            "clusters": clusters.iter().map(|c| json!({"name": c, "type": "EDS"})).collect::<Vec<_>>(),
            "endpoints": [{"cluster_name": "v1", "endpoints": [{"lb_endpoints": endpoints.iter().map(|a| json!(
                {"endpoint": {"address": {"socket_address": {"address": a, "port_value": 9080}}}})).collect::<Vec<_>>()}]}],
        })
    }

    #[test]
    fn identical_configurations_have_no_difference() {
        let c = config(vec![route("v1", None)], &["v1"], &["198.18.0.1"]);
        let diff = compare(&c, &c, Part::All);
        assert!(diff.is_empty());
        assert_eq!(
            diff.render(),
            "listeners: no change\nroutes: no change\nclusters: no change\nendpoints: no change\nno change\n"
        );
    }

    #[test]
    fn routes_show_the_virtual_hosts_and_routes_that_changed() {
        let before = config(vec![route("v1", None)], &["v1"], &["198.18.0.1"]);
        let after = config(
            vec![route("v2", Some("jason")), route("v3", None)],
            &["v1", "v2", "v3"],
            &["198.18.0.2"],
        );
        let diff = compare(&before, &after, Part::All);
        assert!(!diff.is_empty());
        assert_eq!(
            diff.render(),
            "listeners: no change\n\
             routes: 1 changed\n\
             \x20   ~ 9080\n\
             \x20       ~ reviews:9080\n\
             \x20           + /* end-user=jason → v2\n\
             \x20           ~ /* → v3 (was v1)\n\
             clusters: 2 added\n\
             \x20   + v2\n\
             \x20   + v3\n\
             endpoints: 1 changed\n\
             \x20   ~ v1\n\
             \x20       - 198.18.0.1:9080\n\
             \x20       + 198.18.0.2:9080\n\
             2 added, 0 removed, 2 changed\n"
        );
        let json = diff.to_json();
        assert_eq!(json["clusters"]["added"], json!(["v2", "v3"]));
        assert_eq!(json["routes"]["changed"][0]["name"], "9080");
        assert_eq!(
            json["routes"]["changed"][0]["changes"][0]["changes"][1]["change"],
            "~"
        );
    }

    #[test]
    fn other_changes_name_their_fields_and_parts_restrict_the_types() {
        let mut before = config(vec![route("v1", None)], &["v1"], &[]);
        let mut after = before.clone();
        after["clusters"][0]["lb_policy"] = json!("RANDOM");
        after["routes"][0]["virtual_hosts"][0]["routes"][0]["route"]["timeout"] = json!("5s");
        before["clusters"][0]["connect_timeout"] = json!("1s");
        let diff = compare(&before, &after, Part::Clusters);
        assert_eq!(
            diff.render(),
            "clusters: 1 changed\n    ~ v1\n        ~ fields changed: connect_timeout, lb_policy\n0 added, 0 removed, 1 changed\n"
        );
        let diff = compare(&before, &after, Part::Routes);
        assert!(
            diff.render()
                .contains("~ /* → v1 (fields changed: route.timeout)"),
            "{}",
            diff.render()
        );
    }
}
