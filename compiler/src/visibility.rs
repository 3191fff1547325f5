//! `exportTo`: which namespaces see an object. The same rules for Services
//! (annotation `networking.istio.io/exportTo`), ServiceEntries,
//! VirtualServices and DestinationRules, as Istio applies them.

use std::collections::BTreeSet;

/// The annotation that limits a Kubernetes Service's visibility.
pub const SERVICE_EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ExportTo {
    /// Absent, empty, or holding `*`.
    #[default]
    All,
    /// These namespaces only (`.` already replaced by the owner's); empty
    /// for `~`, exported nowhere.
    Namespaces(BTreeSet<String>),
}

impl ExportTo {
    /// From the list as written, relative to the owner's namespace.
    pub fn from_list<S: AsRef<str>>(entries: Option<&[S]>, own_namespace: &str) -> Self {
        let Some(entries) = entries.filter(|e| !e.is_empty()) else {
            return ExportTo::All;
        };
        let mut namespaces = BTreeSet::new();
        for entry in entries {
            match entry.as_ref().trim() {
                "*" => return ExportTo::All,
                "~" => {}
                "." => {
                    namespaces.insert(own_namespace.to_string());
                }
                ns => {
                    namespaces.insert(ns.to_string());
                }
            }
        }
        ExportTo::Namespaces(namespaces)
    }

    /// From the comma-separated annotation value.
    pub fn from_annotation(value: Option<&str>, own_namespace: &str) -> Self {
        let entries: Option<Vec<&str>> = value.map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        });
        Self::from_list(entries.as_deref(), own_namespace)
    }

    pub fn is_visible_to(&self, namespace: &str) -> bool {
        match self {
            ExportTo::All => true,
            ExportTo::Namespaces(set) => set.contains(namespace),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_star_tilde_and_names() {
        let dot = ExportTo::from_list(Some(&["."]), "bookinfo");
        assert!(dot.is_visible_to("bookinfo"));
        assert!(!dot.is_visible_to("other"));
        assert!(ExportTo::from_list(Some(&["*"]), "a").is_visible_to("b"));
        assert!(ExportTo::from_list::<&str>(None, "a").is_visible_to("b"));
        assert!(ExportTo::from_list::<&str>(Some(&[]), "a").is_visible_to("b"));
        let none = ExportTo::from_list(Some(&["~"]), "a");
        assert!(!none.is_visible_to("a"));
        let named = ExportTo::from_annotation(Some("x, y"), "a");
        assert!(named.is_visible_to("y") && !named.is_visible_to("a"));
    }
}
