//! The slice of the Carbonio attribute schema the simulator knows (docs/carbonio.md §6):
//! canonical names, value types and cardinality, and which attributes a server entry
//! inherits from the global config. Names are matched case-insensitively and always
//! printed canonically, as ProvUtil does. Not a general LDAP schema.

use std::collections::BTreeMap;

/// How a value of an attribute is validated on modify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// Exactly `TRUE` or `FALSE` (case-sensitive).
    Boolean,
    /// Exactly one of `yes`, `no`.
    YesNo,
    /// Free text.
    Text,
}

/// One attribute definition.
#[derive(Debug, Clone, Copy)]
pub struct AttrDef {
    /// Canonical (printed) name.
    pub name: &'static str,
    pub ty: AttrType,
    /// Multi-valued (`+attr`/`-attr` meaningful, one output line per value).
    pub multi: bool,
    /// May be set on the global config (`mcf`).
    pub in_global: bool,
    /// May be set on a server entry (`ms`).
    pub in_server: bool,
    /// A server entry without its own value shows the global one (`gs` without `-e`).
    pub server_inherited: bool,
}

const fn def(name: &'static str, ty: AttrType, multi: bool, global: bool, server: bool) -> AttrDef {
    AttrDef {
        name,
        ty,
        multi,
        in_global: global,
        in_server: server,
        server_inherited: global && server,
    }
}

/// The catalog. Order is irrelevant; lookups are case-insensitive.
pub const CATALOG: &[AttrDef] = &[
    def(
        "zimbraMtaEnableSmtpdPolicyd",
        AttrType::Boolean,
        false,
        true,
        true,
    ),
    def(
        "zimbraMtaSmtpdRejectUnlistedRecipient",
        AttrType::YesNo,
        false,
        true,
        true,
    ),
    def(
        "zimbraMtaSmtpdRejectUnlistedSender",
        AttrType::YesNo,
        false,
        true,
        true,
    ),
    def("zimbraMtaRestriction", AttrType::Text, true, true, true),
    def(
        "zimbraMtaSmtpdSenderRestrictions",
        AttrType::Text,
        false,
        true,
        true,
    ),
    def(
        "zimbraMtaSmtpdSenderLoginMaps",
        AttrType::Text,
        false,
        true,
        true,
    ),
    def(
        "zimbraMtaPolicyTimeLimit",
        AttrType::Text,
        false,
        true,
        true,
    ),
    def("zimbraMtaMyNetworks", AttrType::Text, false, true, true),
    def(
        "zimbraMtaPostscreenDnsblSites",
        AttrType::Text,
        true,
        true,
        true,
    ),
    def(
        "zimbraMtaPostscreenDnsblAction",
        AttrType::Text,
        false,
        true,
        true,
    ),
    def(
        "zimbraAmavisFinalSpamDestiny",
        AttrType::Text,
        false,
        true,
        true,
    ),
    def(
        "zimbraCBPolicydQuotasEnabled",
        AttrType::Boolean,
        false,
        true,
        true,
    ),
    def("zimbraServiceEnabled", AttrType::Text, true, false, true),
    def("zimbraServiceInstalled", AttrType::Text, true, false, true),
    def("zimbraServiceHostname", AttrType::Text, false, false, true),
    def("cn", AttrType::Text, false, false, true),
];

/// Attributes that a plain single-value replace refuses without `-r`
/// (localconfig `zmprov_safeguarded_attrs` default).
pub const SAFEGUARDED: &[&str] = &["zimbraServiceEnabled", "zimbraServiceInstalled"];

/// Finds an attribute by name, ignoring case.
pub fn lookup(name: &str) -> Option<&'static AttrDef> {
    CATALOG.iter().find(|d| d.name.eq_ignore_ascii_case(name))
}

/// Attribute values keyed by canonical name; an absent key means unset. Values keep
/// their stored order (multi-valued attributes print in that order).
pub type AttrMap = BTreeMap<String, Vec<String>>;

/// Builds an [`AttrMap`] from `(name, values)` pairs, canonicalising names.
///
/// # Panics
/// On a name that is not in the catalog: the callers are the built-in profiles.
pub fn attr_map<'a>(pairs: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>) -> AttrMap {
    pairs
        .into_iter()
        .map(|(n, v)| {
            let def = lookup(n).unwrap_or_else(|| panic!("attribute {n} is not in the catalog"));
            (
                def.name.to_string(),
                v.into_iter().map(str::to_string).collect(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case_and_returns_canonical_name() {
        let d = lookup("zimbramtarestriction").unwrap();
        assert_eq!(d.name, "zimbraMtaRestriction");
        assert!(d.multi);
        assert!(d.server_inherited);
        assert!(lookup("zimbraMtaRecipientRestriction").is_none());
    }

    #[test]
    fn service_enabled_is_server_only() {
        let d = lookup("ZIMBRASERVICEENABLED").unwrap();
        assert!(!d.in_global && d.in_server && !d.server_inherited);
    }
}
