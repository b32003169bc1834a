//! Package relationship fields (`Depends`, `Pre-Depends`, `Provides`):
//! comma-separated groups of `|` alternatives, each a name with optional
//! `:arch` qualifier, `(op version)` constraint, `[arch list]` and
//! `<profile>` restrictions.

use std::fmt;

use crate::debian::version::{Version, VersionError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<<" => Op::Lt,
            "<=" | "<" => Op::Le,
            "=" => Op::Eq,
            ">=" | ">" => Op::Ge,
            ">>" => Op::Gt,
            _ => return None,
        })
    }

    pub fn holds(self, have: &Version, want: &Version) -> bool {
        let ord = have.cmp(want);
        match self {
            Op::Lt => ord.is_lt(),
            Op::Le => ord.is_le(),
            Op::Eq => ord.is_eq(),
            Op::Ge => ord.is_ge(),
            Op::Gt => ord.is_gt(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }
}

/// One alternative of a dependency group: `name[:arch] [(op version)]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    /// `any`, `native` or an architecture name after `:`.
    pub arch_qualifier: Option<String>,
    pub constraint: Option<(Op, Version)>,
    /// Architectures from `[...]`; a leading `!` negates the list.
    pub arch_restriction: Vec<String>,
}

impl Relation {
    /// Whether this relation applies when building for `arch`.
    pub fn applies_to(&self, arch: &str) -> bool {
        if self.arch_restriction.is_empty() {
            return true;
        }
        let negated = self.arch_restriction.iter().all(|a| a.starts_with('!'));
        let listed = self
            .arch_restriction
            .iter()
            .any(|a| a.trim_start_matches('!') == arch);
        if negated { !listed } else { listed }
    }

    pub fn accepts(&self, version: &Version) -> bool {
        self.constraint
            .as_ref()
            .is_none_or(|(op, want)| op.holds(version, want))
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(q) = &self.arch_qualifier {
            write!(f, ":{q}")?;
        }
        if let Some((op, v)) = &self.constraint {
            write!(f, " ({} {v})", op.as_str())?;
        }
        Ok(())
    }
}

/// A comma-separated element: satisfied by any one of its alternatives.
pub type Group = Vec<Relation>;

pub fn display_group(group: &[Relation]) -> String {
    group
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" | ")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelationError {
    #[error("invalid relation {text:?}: {why}")]
    Syntax { text: String, why: &'static str },
    #[error(transparent)]
    Version(#[from] VersionError),
}

/// Parses a whole relationship field into groups of alternatives.
pub fn parse_field(text: &str) -> Result<Vec<Group>, RelationError> {
    text.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| g.split('|').map(|alt| parse_one(alt.trim())).collect())
        .collect()
}

fn parse_one(text: &str) -> Result<Relation, RelationError> {
    let bad = |why| RelationError::Syntax {
        text: text.to_owned(),
        why,
    };
    // Build profiles (`<!nocheck>`) only matter when building from source.
    let text_no_profiles = match text.find('<') {
        Some(i) if !text[i..].starts_with("<<") && !text[i..].starts_with("<=") => text[..i].trim(),
        _ => text,
    };
    let mut rest = text_no_profiles;
    let mut arch_restriction = Vec::new();
    if let Some(open) = rest.find('[') {
        let close = rest[open..].find(']').ok_or_else(|| bad("unclosed `[`"))? + open;
        arch_restriction = rest[open + 1..close]
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        rest = rest[..open].trim();
    }
    let mut constraint = None;
    if let Some(open) = rest.find('(') {
        let close = rest[open..].find(')').ok_or_else(|| bad("unclosed `(`"))? + open;
        let inner = rest[open + 1..close].trim();
        let op_len = inner
            .find(|c: char| !"<>=".contains(c))
            .ok_or_else(|| bad("missing version"))?;
        let op = Op::parse(&inner[..op_len]).ok_or_else(|| bad("unknown operator"))?;
        constraint = Some((op, Version::parse(inner[op_len..].trim())?));
        rest = rest[..open].trim();
    }
    let (name, arch_qualifier) = match rest.split_once(':') {
        Some((n, q)) => (n.trim(), Some(q.trim().to_owned())),
        None => (rest.trim(), None),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
    {
        return Err(bad("invalid package name"));
    }
    Ok(Relation {
        name: name.to_owned(),
        arch_qualifier,
        constraint,
        arch_restriction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_alternatives_constraints_and_qualifiers() {
        let groups = parse_field(
            "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any, foo [amd64 arm64] <!nocheck>, bar (<< 2~)",
        )
        .unwrap();
        assert_eq!(groups.len(), 5);
        assert_eq!(groups[0][0].name, "libc6");
        assert_eq!(groups[0][0].constraint.as_ref().unwrap().0, Op::Ge);
        assert_eq!(groups[1].len(), 2);
        assert_eq!(groups[1][1].name, "debconf-2.0");
        assert_eq!(groups[2][0].arch_qualifier.as_deref(), Some("any"));
        assert!(groups[3][0].applies_to("arm64"));
        assert!(!groups[3][0].applies_to("s390x"));
        assert_eq!(display_group(&groups[1]), "debconf (>= 0.5) | debconf-2.0");
        let v = Version::parse("1.9").unwrap();
        assert!(groups[4][0].accepts(&v));
        assert!(!groups[4][0].accepts(&Version::parse("2").unwrap()));
    }

    #[test]
    fn negated_arch_lists() {
        let g = parse_field("foo [!amd64]").unwrap();
        assert!(!g[0][0].applies_to("amd64"));
        assert!(g[0][0].applies_to("arm64"));
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in ["foo (>= ", "Foo", "foo (~ 1)", "foo (>= x)", "foo [amd64"] {
            assert!(parse_field(bad).is_err(), "{bad}");
        }
    }
}
