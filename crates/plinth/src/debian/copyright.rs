//! Debian `copyright` files to SPDX licence expressions.
//!
//! Every Debian package ships `/usr/share/doc/<package>/copyright`. Most of
//! them use the machine-readable format (DEP-5, "copyright-format 1.0"): a
//! header paragraph with `Format:`, `Files:` paragraphs each naming the
//! licence of some files by a short name, and standalone `License:`
//! paragraphs giving the text of licences that are not in
//! `/usr/share/common-licenses`. Older packages (libc6, libgcc-s1,
//! base-files, ...) still ship free-form text.
//!
//! [`license_from_copyright`] turns either into a [`License`]: an SPDX
//! expression plus the `LicenseRef-` entries (with their text) that the
//! expression uses. The rules:
//! - DEP-5: the licences of all `Files:` paragraphs, joined by `AND`. Debian
//!   short names are mapped to SPDX identifiers where the meaning is the
//!   same (`GPL-2+` is `GPL-2.0-or-later`, `Expat` is `MIT`); a name that has
//!   no exact SPDX counterpart (`public-domain`, unversioned `GPL`,
//!   `BSD-3-google`) becomes `LicenseRef-<name>` with the text the file
//!   gives for it. Guessing a "close" SPDX id would assert something the
//!   file does not say.
//! - Free-form text: one `LicenseRef-debian-copyright-<package>` whose text
//!   is the whole file, since nothing in it can be read reliably.
//! - No file: no assertion at all (`NOASSERTION`).
//!
//! Parsing never fails: copyright files in the archive are hand-written and
//! often bend the format (blank lines inside licence texts, licence text on
//! the short-name line, tabs for indentation), and a licence record that
//! says "here is the whole file" is better than no image.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::digest::sha256_hex;

/// What is known about the licence of one component.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct License {
    /// A valid SPDX 2.3 licence expression (strict syntax, only identifiers
    /// from the SPDX list or `LicenseRef-` entries of [`License::refs`]), or
    /// `None` when nothing can be asserted (`NOASSERTION`).
    pub expression: Option<String>,
    /// Every `LicenseRef-` the expression uses, sorted by id.
    pub refs: Vec<ExtractedLicense>,
}

/// A licence that is not on the SPDX list, carried with its text
/// (SPDX `hasExtractedLicensingInfos`, CycloneDX license `name`/`text`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExtractedLicense {
    /// `LicenseRef-[A-Za-z0-9.-]+`.
    pub id: String,
    /// The name the source used (the Debian short name, or a description).
    pub name: String,
    /// The licence text; never empty (SPDX requires extracted text).
    pub text: String,
}

impl License {
    /// Nothing known: SPDX `NOASSERTION`, no CycloneDX licence.
    pub fn no_assertion() -> Self {
        Self::default()
    }

    /// A licence declared as an SPDX expression by the component itself,
    /// such as a Cargo crate's `license` field. Old crates write `MIT/Apache-2.0`
    /// or imprecise names, so the expression is canonicalised first; if it
    /// still does not parse, the declaration is kept verbatim as one
    /// `LicenseRef-` so that nothing is silently dropped.
    pub fn from_declared(declared: &str) -> Self {
        let declared = declared.trim();
        if declared.is_empty() {
            return Self::no_assertion();
        }
        let canonical = match spdx::Expression::canonicalize(declared) {
            Ok(Some(fixed)) => fixed,
            _ => declared.to_owned(),
        };
        if is_valid_spdx(&canonical) && !canonical.contains("LicenseRef-") {
            return Self {
                expression: Some(canonical),
                refs: Vec::new(),
            };
        }
        let id = format!("LicenseRef-{}", sanitise(declared));
        Self {
            expression: Some(id.clone()),
            refs: vec![ExtractedLicense {
                id,
                name: declared.to_owned(),
                text: format!(
                    "Declared licence \"{declared}\", which is not a valid SPDX expression."
                ),
            }],
        }
    }

    /// The expression, or SPDX's `NOASSERTION`.
    pub fn spdx_expression(&self) -> &str {
        self.expression.as_deref().unwrap_or("NOASSERTION")
    }
}

/// The licence of a Debian package from the text of its copyright file
/// (`None` when the package ships none). `package` names the `LicenseRef-`
/// of a free-form file; passing the source package lets the binaries of one
/// source share it.
pub fn license_from_copyright(package: &str, copyright: Option<&str>) -> License {
    let Some(text) = copyright else {
        return License::no_assertion();
    };
    if text.trim().is_empty() {
        return License::no_assertion();
    }
    let paragraphs = parse_paragraphs(text);
    if is_machine_readable(&paragraphs)
        && let Some(license) = from_dep5(&paragraphs)
    {
        return license;
    }
    whole_file(package, text)
}

/// Whether the text declares itself machine-readable (DEP-5): a `Format:`
/// field in the first paragraph. Early drafts of the format called the field
/// `Format-Specification:`; a few packages still use it.
fn is_machine_readable(paragraphs: &[Paragraph]) -> bool {
    paragraphs
        .first()
        .is_some_and(|p| p.field("Format").is_some() || p.field("Format-Specification").is_some())
}

/// One licence for the whole free-form file.
fn whole_file(package: &str, text: &str) -> License {
    let id = format!("LicenseRef-debian-copyright-{}", sanitise(package));
    License {
        expression: Some(id.clone()),
        refs: vec![ExtractedLicense {
            id,
            name: format!("Debian copyright file of {package}"),
            text: text.to_owned(),
        }],
    }
}

// ---------------------------------------------------------------------------
// deb822 paragraphs, tolerant of the ways hand-written files bend the syntax.

#[derive(Debug, Default)]
struct Paragraph {
    fields: Vec<Field>,
}

#[derive(Debug)]
struct Field {
    name: String,
    /// The text after the colon on the field's own line, trimmed.
    first: String,
    /// Continuation lines with the leading space removed and ` .` turned
    /// into an empty line.
    rest: Vec<String>,
}

impl Paragraph {
    fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

impl Field {
    fn text(&self) -> String {
        let mut lines: Vec<&str> = self.rest.iter().map(String::as_str).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        while lines.first().is_some_and(|l| l.is_empty()) {
            lines.remove(0);
        }
        lines.join("\n")
    }
}

fn parse_paragraphs(text: &str) -> Vec<Paragraph> {
    let mut out: Vec<Paragraph> = Vec::new();
    let mut current = Paragraph::default();
    // Blank lines seen since the last field line: if an indented line comes
    // next, the author put a real blank line inside a licence text instead
    // of ` .`, and the text goes on in the previous field.
    let mut pending_blank = 0usize;
    for raw in text.lines() {
        let line = raw.trim_end();
        if line.is_empty() {
            if !current.fields.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            pending_blank += 1;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let indented = line.starts_with(' ') || line.starts_with('\t');
        if !indented && let Some((name, value)) = split_field(line) {
            current.fields.push(Field {
                name: name.to_owned(),
                first: value.trim().to_owned(),
                rest: Vec::new(),
            });
            pending_blank = 0;
            continue;
        }
        // A continuation line, or an unindented line that is not a field
        // (treated as a continuation rather than lost).
        let content = continuation(line);
        let target = if let Some(f) = current.fields.last_mut() {
            Some(f)
        } else if pending_blank > 0 {
            // Text after a stray blank line: it belongs to the field that
            // ended the previous paragraph.
            let prev = out.last_mut().and_then(|p| p.fields.last_mut());
            if let Some(f) = prev {
                f.rest
                    .extend(std::iter::repeat_n(String::new(), pending_blank));
                pending_blank = 0;
                // Re-open that paragraph so that following lines join it.
                if let Some(p) = out.pop() {
                    current = p;
                }
                current.fields.last_mut()
            } else {
                None
            }
        } else {
            None
        };
        if let Some(f) = target {
            f.rest.push(content);
        }
    }
    if !current.fields.is_empty() {
        out.push(current);
    }
    out
}

/// `Name: value` where the name is printable ASCII without spaces or colons.
fn split_field(line: &str) -> Option<(&str, &str)> {
    let colon = line.find(':')?;
    let name = &line[..colon];
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return None;
    }
    Some((name, &line[colon + 1..]))
}

fn continuation(line: &str) -> String {
    let stripped = line
        .strip_prefix(' ')
        .or_else(|| line.strip_prefix('\t'))
        .unwrap_or(line);
    if stripped.trim() == "." {
        String::new()
    } else {
        stripped.to_owned()
    }
}

// ---------------------------------------------------------------------------
// DEP-5 licences.

/// A licence expression before `LicenseRef-` ids are assigned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Expr {
    /// Valid SPDX: an identifier, `id+`, or `id WITH exception`.
    Spdx(String),
    /// Not on the SPDX list: keyed by the name the file used.
    Named(String),
    /// A licence with no name, only text (`License:` with an empty or
    /// free-text first line).
    Anonymous(String),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

fn from_dep5(paragraphs: &[Paragraph]) -> Option<License> {
    // Texts of licences by normalised name, from standalone paragraphs
    // first (the format's place for them), then from Files paragraphs whose
    // License field carries text for a single name.
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    let mut inline: Vec<(String, String)> = Vec::new();
    let mut files_exprs: Vec<Expr> = Vec::new();
    let mut header_expr: Option<Expr> = None;

    for (i, p) in paragraphs.iter().enumerate() {
        let Some(lic) = p.field("License") else {
            continue;
        };
        let text = lic.text();
        if p.field("Files").is_some() {
            if let Some(e) = parse_license_field(&lic.first, &text) {
                if let Expr::Named(name) = &e
                    && !text.is_empty()
                {
                    inline.push((normalise_name(name), text.clone()));
                }
                files_exprs.push(e);
            }
        } else if i == 0 {
            header_expr = parse_license_field(&lic.first, &text);
        } else if !lic.first.is_empty() && !text.is_empty() {
            texts.entry(normalise_name(&lic.first)).or_insert(text);
        }
    }
    for (name, text) in inline {
        texts.entry(name).or_insert(text);
    }

    // The header's License is a summary the format allows when there are no
    // Files paragraphs to say more.
    let expr = if files_exprs.is_empty() {
        header_expr?
    } else {
        combine_and(files_exprs)
    };

    let mut refs = RefNames::default();
    collect_refs(&expr, &mut refs);
    let ids = refs.assign_ids();
    let rendered = render(&expr, &ids, true);
    if !is_valid_spdx(&rendered) {
        // Should not happen (every piece is checked on the way); the caller
        // falls back to the whole file rather than emit an invalid document.
        return None;
    }
    let mut extracted: Vec<ExtractedLicense> = ids
        .iter()
        .map(|(key, id)| {
            let (name, text) = match key {
                RefKey::Named(name) => {
                    let text = texts
                        .get(&normalise_name(name))
                        .cloned()
                        .unwrap_or_else(|| {
                            format!(
                                "The Debian copyright file names this licence \"{name}\" \
                             without giving its text."
                            )
                        });
                    (name.clone(), text)
                }
                RefKey::Anonymous(text) => ("unnamed licence".to_owned(), text.clone()),
            };
            ExtractedLicense {
                id: id.clone(),
                name,
                text,
            }
        })
        .collect();
    extracted.sort();
    extracted.dedup_by(|a, b| a.id == b.id);
    Some(License {
        expression: Some(rendered),
        refs: extracted,
    })
}

/// All paragraphs' licences under one `AND`, each distinct term once, in a
/// stable order (the file's paragraph order says nothing about licences).
fn combine_and(exprs: Vec<Expr>) -> Expr {
    let mut terms = BTreeSet::new();
    for e in exprs {
        match e {
            Expr::And(inner) => terms.extend(inner),
            other => {
                terms.insert(other);
            }
        }
    }
    let mut terms: Vec<Expr> = terms.into_iter().collect();
    if terms.len() == 1 {
        terms.pop().unwrap_or(Expr::And(Vec::new()))
    } else {
        Expr::And(terms)
    }
}

/// A `License:` field: the first line is the synopsis (short names joined
/// by `and`/`or`, `, and`/`, or` binding loosest, `with X exception`); the
/// rest, if any, is text. A first line that is not a synopsis (empty, or
/// prose) makes the whole field one anonymous licence.
fn parse_license_field(first: &str, text: &str) -> Option<Expr> {
    if let Some(e) = parse_synopsis(first) {
        return Some(e);
    }
    let whole = if first.is_empty() {
        text.to_owned()
    } else if text.is_empty() {
        first.to_owned()
    } else {
        format!("{first}\n{text}")
    };
    if whole.trim().is_empty() {
        None
    } else {
        Some(Expr::Anonymous(whole))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    And,
    Or,
}

fn parse_synopsis(synopsis: &str) -> Option<Expr> {
    let words: Vec<&str> = synopsis.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    // Split into comma groups: a word ending in ',' followed by and/or
    // closes a group, and that operator joins groups.
    let mut groups: Vec<Vec<&str>> = vec![Vec::new()];
    let mut group_ops: Vec<Op> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        if let Some(stem) = w.strip_suffix(',')
            && let Some(op) = words.get(i + 1).and_then(|n| as_op(n))
        {
            if !stem.is_empty() {
                groups.last_mut()?.push(stem);
            }
            groups.push(Vec::new());
            group_ops.push(op);
            i += 2;
            continue;
        }
        groups.last_mut()?.push(w);
        i += 1;
    }
    let parsed: Vec<Expr> = groups
        .iter()
        .map(|g| parse_group(g))
        .collect::<Option<_>>()?;
    // Comma groups apply left to right.
    let mut iter = parsed.into_iter();
    let mut acc = iter.next()?;
    for (op, next) in group_ops.into_iter().zip(iter) {
        acc = join(op, acc, next);
    }
    Some(acc)
}

fn as_op(word: &str) -> Option<Op> {
    if word.eq_ignore_ascii_case("and") {
        Some(Op::And)
    } else if word.eq_ignore_ascii_case("or") {
        Some(Op::Or)
    } else {
        None
    }
}

fn join(op: Op, a: Expr, b: Expr) -> Expr {
    let mut items = Vec::new();
    for e in [a, b] {
        match (op, e) {
            (Op::And, Expr::And(inner)) | (Op::Or, Expr::Or(inner)) => items.extend(inner),
            (_, other) => items.push(other),
        }
    }
    match op {
        Op::And => Expr::And(items),
        Op::Or => Expr::Or(items),
    }
}

/// Within a comma group `and` binds tighter than `or`, as in SPDX.
fn parse_group(words: &[&str]) -> Option<Expr> {
    let mut alternatives: Vec<Expr> = Vec::new();
    let mut conjuncts: Vec<Expr> = Vec::new();
    let mut term: Vec<&str> = Vec::new();
    for &w in words {
        match as_op(w) {
            Some(op) => {
                conjuncts.push(parse_term(&term)?);
                term.clear();
                if op == Op::Or {
                    alternatives.push(collapse(Op::And, std::mem::take(&mut conjuncts)));
                }
            }
            None => term.push(w),
        }
    }
    conjuncts.push(parse_term(&term)?);
    alternatives.push(collapse(Op::And, conjuncts));
    Some(collapse(Op::Or, alternatives))
}

fn collapse(op: Op, mut items: Vec<Expr>) -> Expr {
    if items.len() == 1 {
        return items.remove(0);
    }
    let mut flat = Vec::new();
    for e in items {
        match (op, e) {
            (Op::And, Expr::And(inner)) | (Op::Or, Expr::Or(inner)) => flat.extend(inner),
            (_, other) => flat.push(other),
        }
    }
    match op {
        Op::And => Expr::And(flat),
        Op::Or => Expr::Or(flat),
    }
}

/// One licence: a single short name, or `NAME with EXCEPTION [exception]`.
/// Anything else (prose on the synopsis line) is not a synopsis.
fn parse_term(words: &[&str]) -> Option<Expr> {
    match words {
        [] => None,
        [name] => {
            let name = name.trim_end_matches([',', ';']);
            if name.is_empty() || !name.chars().any(|c| c.is_ascii_alphanumeric()) {
                return None;
            }
            Some(match map_name(name) {
                Some(id) => Expr::Spdx(id),
                None => Expr::Named(name.to_owned()),
            })
        }
        [name, with, exc @ ..] if with.eq_ignore_ascii_case("with") && !exc.is_empty() => {
            let exc: Vec<&str> = match exc {
                [head @ .., last] if last.eq_ignore_ascii_case("exception") && !head.is_empty() => {
                    head.to_vec()
                }
                all => all.to_vec(),
            };
            let exc_name = exc.join("-");
            let whole = words.join(" ");
            match map_name(name).and_then(|lic| {
                // `WITH` applies to one licence id, never to a compound.
                if lic.contains(' ') {
                    return None;
                }
                map_exception(&exc_name, &lic).map(|e| format!("{lic} WITH {e}"))
            }) {
                Some(s) => Some(Expr::Spdx(s)),
                // SPDX 2.3 has no `LicenseRef` for exceptions: the licence
                // and its exception together become one named licence.
                None => Some(Expr::Named(whole)),
            }
        }
        _ => None,
    }
}

/// Names normalise for text lookup: the same licence is sometimes written
/// `BSD-3-clause` in a Files paragraph and `BSD-3-Clause` in its own.
fn normalise_name(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// A Debian short name to an SPDX expression fragment, when they mean the
/// same licence.
fn map_name(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    // DEP-5's own short names whose SPDX id is spelt differently, and the
    // composite `Perl` (defined by DEP-5 as "Artistic or GPL-1+").
    let fixed = match lower.as_str() {
        "expat" | "mit" => Some("MIT"),
        "artistic" | "artistic-1" | "artistic-1-perl" => Some("Artistic-1.0-Perl"),
        "perl" => Some("Artistic-1.0-Perl OR GPL-1.0-or-later"),
        "apache-2" | "apache-2.0" | "apachev2" => Some("Apache-2.0"),
        "mpl-2" => Some("MPL-2.0"),
        "cc0" => Some("CC0-1.0"),
        "boost-1.0" | "bsl-1" => Some("BSL-1.0"),
        "psf-2" => Some("PSF-2.0"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_owned());
    }
    if let Some(gnu) = map_gnu(&lower) {
        return Some(gnu);
    }
    // `OpenLDAP-2.8` is `OLDAP-2.8` in SPDX.
    if let Some(v) = lower.strip_prefix("openldap-") {
        return spdx_id_ci(&format!("OLDAP-{v}"));
    }
    // `X+` outside the GNU family is valid SPDX syntax, but validators
    // (spdx-tools' licence list) reject it: keep such names as LicenseRefs.
    if name.ends_with('+') {
        return None;
    }
    // Debian writes versions as `-2` where SPDX writes `-2.0`.
    spdx_id_ci(name).or_else(|| {
        let last = name.rsplit('-').next()?;
        if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
            spdx_id_ci(&format!("{name}.0"))
        } else {
            None
        }
    })
}

/// The GNU family: `GPL-2`, `GPL-2+`, `GPLv3+`, `GPL-2.0+`, `LGPL-2.1+`,
/// `AGPL-3`, `GFDL-1.3+`, `GFDL-NIV-1.3` ... Unversioned names (`GPL`,
/// `LGPL`) stay unmapped: Debian uses them for "some version", which SPDX
/// cannot say.
fn map_gnu(lower: &str) -> Option<String> {
    let (family, rest) = [
        ("gfdl-niv", "GFDL-NIV"),
        ("agpl", "AGPL"),
        ("lgpl", "LGPL"),
        ("gfdl", "GFDL"),
        ("gpl", "GPL"),
    ]
    .iter()
    .find_map(|(prefix, family)| lower.strip_prefix(prefix).map(|r| (*family, r)))?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let rest = rest.strip_prefix('v').unwrap_or(rest);
    let (version, later) = if let Some(v) = rest.strip_suffix('+') {
        (v, true)
    } else if let Some(v) = rest.strip_suffix("-or-later") {
        (v, true)
    } else if let Some(v) = rest.strip_suffix("-only") {
        (v, false)
    } else {
        (rest, false)
    };
    if version.is_empty()
        || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || version.starts_with('.')
        || version.ends_with('.')
    {
        return None;
    }
    let version = if version.contains('.') {
        version.to_owned()
    } else {
        format!("{version}.0")
    };
    let suffix = if later { "or-later" } else { "only" };
    let candidate = if family == "GFDL-NIV" {
        format!("GFDL-{version}-no-invariants-{suffix}")
    } else {
        format!("{family}-{version}-{suffix}")
    };
    spdx_id_ci(&candidate)
}

/// The SPDX list's spelling of `name`, compared case-insensitively, unless
/// the id is deprecated (strict SPDX parsing rejects those).
fn spdx_id_ci(name: &str) -> Option<String> {
    spdx::identifiers::LICENSES
        .iter()
        .find(|l| l.name.eq_ignore_ascii_case(name))
        .filter(|l| l.flags & spdx::flags::IS_DEPRECATED == 0)
        .map(|l| l.name.to_owned())
}

/// An exception named in Debian style (`Autoconf`, `Bison`,
/// `Linux-syscall-note`, `GCC-3.1`, `Font`) to its SPDX id. Some exceptions
/// exist per licence version, so the licence decides between them.
fn map_exception(name: &str, license: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let gpl3 = license.contains("-3.0");
    let specific = match lower.as_str() {
        "autoconf" => Some(if license.starts_with("GPL-2.0") {
            "Autoconf-exception-2.0"
        } else if license.starts_with("GPL-3.0") {
            "Autoconf-exception-3.0"
        } else {
            "Autoconf-exception-generic"
        }),
        "bison" => Some("Bison-exception-2.2"),
        "gcc" | "gcc-runtime-library" | "gcc-runtime" => Some(if gpl3 {
            "GCC-exception-3.1"
        } else {
            "GCC-exception-2.0"
        }),
        "font" => Some("Font-exception-2.0"),
        "classpath" => Some("Classpath-exception-2.0"),
        "libtool" => Some("Libtool-exception"),
        "llvm" => Some("LLVM-exception"),
        _ => None,
    };
    let candidates: Vec<String> = match specific {
        Some(s) => vec![s.to_owned()],
        None => vec![
            name.to_owned(),
            format!("{name}-exception"),
            format!("{name}-exception-2.0"),
        ],
    };
    candidates.iter().find_map(|c| {
        spdx::identifiers::EXCEPTIONS
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(c))
            .filter(|e| e.flags & spdx::flags::IS_DEPRECATED == 0)
            .map(|e| e.name.to_owned())
    })
}

// ---------------------------------------------------------------------------
// LicenseRef ids and rendering.

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum RefKey {
    Named(String),
    Anonymous(String),
}

#[derive(Default)]
struct RefNames {
    keys: BTreeSet<RefKey>,
}

impl RefNames {
    /// Ids from the names; when two different names sanitise to the same id
    /// (`MIT/X11` and `MIT-X11`), every one of them gets a hash suffix, so
    /// the choice does not depend on which came first.
    fn assign_ids(&self) -> BTreeMap<RefKey, String> {
        let base: Vec<(RefKey, String)> = self
            .keys
            .iter()
            .map(|k| {
                let id = match k {
                    RefKey::Named(n) => format!("LicenseRef-{}", sanitise(n)),
                    RefKey::Anonymous(text) => {
                        format!("LicenseRef-unnamed-{}", &sha256_hex(text.as_bytes())[..12])
                    }
                };
                (k.clone(), id)
            })
            .collect();
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, id) in &base {
            *count.entry(id.as_str()).or_default() += 1;
        }
        base.iter()
            .map(|(k, id)| {
                let id = if count[id.as_str()] > 1 {
                    let key = match k {
                        RefKey::Named(n) | RefKey::Anonymous(n) => n,
                    };
                    format!("{id}-{}", &sha256_hex(key.as_bytes())[..8])
                } else {
                    id.clone()
                };
                (k.clone(), id)
            })
            .collect()
    }
}

fn collect_refs(e: &Expr, refs: &mut RefNames) {
    match e {
        Expr::Spdx(_) => {}
        Expr::Named(n) => {
            refs.keys.insert(RefKey::Named(n.clone()));
        }
        Expr::Anonymous(t) => {
            refs.keys.insert(RefKey::Anonymous(t.clone()));
        }
        Expr::And(items) | Expr::Or(items) => items.iter().for_each(|i| collect_refs(i, refs)),
    }
}

/// SPDX text. Nested compounds are always parenthesised: SPDX's precedence
/// (AND over OR) would make some parentheses redundant, but readers of an
/// SBOM should not need to know it. Operands keep their order except that
/// a top-level AND is already sorted by [`combine_and`].
fn render(e: &Expr, ids: &BTreeMap<RefKey, String>, top: bool) -> String {
    match e {
        Expr::Spdx(s) => {
            if s.contains(" OR ") && !top {
                format!("({s})")
            } else {
                s.clone()
            }
        }
        Expr::Named(n) => ids
            .get(&RefKey::Named(n.clone()))
            .cloned()
            .unwrap_or_default(),
        Expr::Anonymous(t) => ids
            .get(&RefKey::Anonymous(t.clone()))
            .cloned()
            .unwrap_or_default(),
        Expr::And(items) | Expr::Or(items) => {
            let op = if matches!(e, Expr::And(_)) {
                " AND "
            } else {
                " OR "
            };
            let inner = items
                .iter()
                .map(|i| render(i, ids, false))
                .collect::<Vec<_>>()
                .join(op);
            if top { inner } else { format!("({inner})") }
        }
    }
}

/// `[A-Za-z0-9.-]+` for `LicenseRef-` and `SPDXRef-` ids: `+` becomes
/// `plus` (it carries meaning: "or later"), every other character a `-`,
/// runs of `-` collapse.
pub fn sanitise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' => out.push(c),
            '+' => out.push_str("plus"),
            _ => {
                if !out.ends_with('-') {
                    out.push('-');
                }
            }
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "unnamed".to_owned()
    } else {
        trimmed.to_owned()
    }
}

fn is_valid_spdx(expr: &str) -> bool {
    spdx::Expression::parse(expr).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep5(body: &str) -> String {
        format!(
            "Format: copyright-format/1.0/\n\
             Upstream-Name: x\n\n{body}"
        )
    }

    fn expr_of(body: &str) -> String {
        license_from_copyright("pkg", Some(&dep5(body)))
            .expression
            .unwrap_or_default()
    }

    #[test]
    fn short_names_map_to_spdx() {
        let table: &[(&str, &str)] = &[
            ("GPL-2+", "GPL-2.0-or-later"),
            ("GPL-2", "GPL-2.0-only"),
            ("GPL-2.0+", "GPL-2.0-or-later"),
            ("GPLv3+", "GPL-3.0-or-later"),
            ("LGPL-2.1+", "LGPL-2.1-or-later"),
            ("LGPL-2", "LGPL-2.0-only"),
            ("AGPL-3", "AGPL-3.0-only"),
            ("GFDL-NIV-1.3+", "GFDL-1.3-no-invariants-or-later"),
            ("BSD-3-clause", "BSD-3-Clause"),
            ("BSD-2-Clause", "BSD-2-Clause"),
            ("Expat", "MIT"),
            ("Apache-2.0", "Apache-2.0"),
            ("Apache-2", "Apache-2.0"),
            ("MPL-2.0", "MPL-2.0"),
            ("Zlib", "Zlib"),
            ("zlib", "Zlib"),
            ("CC0-1.0", "CC0-1.0"),
            ("CC-BY-SA-3", "CC-BY-SA-3.0"),
            ("ISC", "ISC"),
            ("OpenLDAP-2.8", "OLDAP-2.8"),
            ("libpng", "Libpng"),
            ("Artistic", "Artistic-1.0-Perl"),
            ("Artistic-2.0", "Artistic-2.0"),
            (
                "GPL-1+ or Artistic",
                "GPL-1.0-or-later OR Artistic-1.0-Perl",
            ),
            ("LGPL-3+ or GPL-2+", "LGPL-3.0-or-later OR GPL-2.0-or-later"),
            ("BSL-1.0 and MIT", "BSL-1.0 AND MIT"),
            (
                "GPL-2+ or Artistic-2.0, and BSD-3-clause",
                "BSD-3-Clause AND (GPL-2.0-or-later OR Artistic-2.0)",
            ),
            (
                "GPL-2+ with Autoconf exception",
                "GPL-2.0-or-later WITH Autoconf-exception-2.0",
            ),
            (
                "GPL-3+ with Bison exception",
                "GPL-3.0-or-later WITH Bison-exception-2.2",
            ),
            (
                "GPL-2 with Linux-syscall-note exception",
                "GPL-2.0-only WITH Linux-syscall-note",
            ),
            (
                "GPL-3+ with GCC-Runtime-Library exception",
                "GPL-3.0-or-later WITH GCC-exception-3.1",
            ),
            ("public-domain", "LicenseRef-public-domain"),
            ("GPL", "LicenseRef-GPL"),
            ("MIT/X11", "LicenseRef-MIT-X11"),
            ("OPL-1+", "LicenseRef-OPL-1plus"),
            ("Perl", "Artistic-1.0-Perl OR GPL-1.0-or-later"),
        ];
        for (name, want) in table {
            let got = expr_of(&format!("Files: *\nCopyright: someone\nLicense: {name}\n"));
            assert_eq!(&got, want, "short name {name:?}");
            assert!(spdx::Expression::parse(&got).is_ok(), "{got}");
        }
    }

    #[test]
    fn files_paragraphs_combine_with_and() {
        let body = "Files: *\nCopyright: a\nLicense: GPL-2+\n\n\
                    Files: lib/*\nCopyright: b\nLicense: LGPL-2.1+ or MIT\n\n\
                    Files: debian/*\nCopyright: c\nLicense: GPL-2+\n\n\
                    Files: x/*\nCopyright: d\nLicense: BSD-3-clause and Zlib\n";
        assert_eq!(
            expr_of(body),
            "BSD-3-Clause AND GPL-2.0-or-later AND Zlib AND (LGPL-2.1-or-later OR MIT)"
        );
    }

    #[test]
    fn license_ref_text_comes_from_standalone_paragraph() {
        let body = "Files: *\nCopyright: a\nLicense: BSD-3-google\n\n\
                    License: BSD-3-google\n Redistribution and use ...\n .\n Second para.\n";
        let l = license_from_copyright("pkg", Some(&dep5(body)));
        assert_eq!(l.expression.as_deref(), Some("LicenseRef-BSD-3-google"));
        assert_eq!(l.refs.len(), 1);
        assert_eq!(l.refs[0].name, "BSD-3-google");
        assert_eq!(l.refs[0].text, "Redistribution and use ...\n\nSecond para.");
    }

    #[test]
    fn inline_text_and_missing_text() {
        let l = license_from_copyright(
            "tzdata",
            Some(&dep5(
                "Files: *\nCopyright: IANA\nLicense: public-domain\n This database is in the public domain.\n",
            )),
        );
        assert_eq!(l.refs[0].text, "This database is in the public domain.");
        let l = license_from_copyright(
            "x",
            Some(&dep5("Files: *\nCopyright: a\nLicense: permissive\n")),
        );
        assert!(l.refs[0].text.contains("without giving its text"));
    }

    #[test]
    fn prose_on_the_synopsis_line_is_an_unnamed_licence() {
        let body = "Files: *\nCopyright: a\nLicense: Permission to use, copy, modify, and distribute this software\n is granted.\n";
        let l = license_from_copyright("pkg", Some(&dep5(body)));
        let e = l.expression.unwrap();
        assert!(e.starts_with("LicenseRef-unnamed-"), "{e}");
        assert!(l.refs[0].text.starts_with("Permission to use"));
        assert!(l.refs[0].text.ends_with("is granted."));
    }

    #[test]
    fn blank_line_inside_licence_text_is_tolerated() {
        let body = "Files: *\nCopyright: a\nLicense: Foo\n\n\
                    License: Foo\n first part\n\n second part\n\n\
                    Files: b/*\nCopyright: b\nLicense: MIT\n";
        let l = license_from_copyright("pkg", Some(&dep5(body)));
        assert_eq!(l.expression.as_deref(), Some("MIT AND LicenseRef-Foo"));
        assert_eq!(l.refs[0].text, "first part\n\nsecond part");
    }

    #[test]
    fn colliding_ref_names_get_distinct_ids() {
        let body = "Files: a\nCopyright: a\nLicense: MIT/X11\n\n\
                    Files: b\nCopyright: b\nLicense: MIT-X11\n";
        let l = license_from_copyright("pkg", Some(&dep5(body)));
        assert_eq!(l.refs.len(), 2);
        assert_ne!(l.refs[0].id, l.refs[1].id);
        assert!(spdx::Expression::parse(l.expression.as_deref().unwrap()).is_ok());
    }

    #[test]
    fn non_dep5_and_missing() {
        let l = license_from_copyright("libc6", Some("This is the Debian prepackaged version\n"));
        assert_eq!(
            l.expression.as_deref(),
            Some("LicenseRef-debian-copyright-libc6")
        );
        assert_eq!(l.refs[0].text, "This is the Debian prepackaged version\n");
        let l = license_from_copyright("libstdc++6", Some("free text"));
        assert_eq!(
            l.expression.as_deref(),
            Some("LicenseRef-debian-copyright-libstdcplusplus6")
        );
        assert_eq!(license_from_copyright("x", None), License::no_assertion());
        assert_eq!(License::no_assertion().spdx_expression(), "NOASSERTION");
    }

    #[test]
    fn dep5_without_any_licence_falls_back_to_whole_file() {
        let text = dep5("Files: *\nCopyright: a\n");
        let l = license_from_copyright("p", Some(&text));
        assert_eq!(
            l.expression.as_deref(),
            Some("LicenseRef-debian-copyright-p")
        );
    }

    #[test]
    fn header_licence_used_when_no_files_paragraph() {
        let text = "Format: copyright-format/1.0/\nLicense: GPL-2+\n";
        assert_eq!(
            license_from_copyright("p", Some(text))
                .expression
                .as_deref(),
            Some("GPL-2.0-or-later")
        );
    }

    #[test]
    fn declared_expressions() {
        assert_eq!(
            License::from_declared("MIT OR Apache-2.0")
                .expression
                .as_deref(),
            Some("MIT OR Apache-2.0")
        );
        assert_eq!(
            License::from_declared("MIT/Apache-2.0")
                .expression
                .as_deref(),
            Some("MIT OR Apache-2.0")
        );
        let odd = License::from_declared("Foo Public License");
        assert_eq!(
            odd.expression.as_deref(),
            Some("LicenseRef-Foo-Public-License")
        );
        assert_eq!(odd.refs.len(), 1);
        assert_eq!(License::from_declared("  "), License::no_assertion());
    }

    #[test]
    fn malformed_input_never_panics() {
        let nasty = [
            "",
            "\n\n\n",
            "Format:",
            "Format: x\n\nFiles\nLicense",
            "Format: x\n\nFiles: *\nLicense: , and , or",
            "Format: x\n\nFiles: *\nLicense: and",
            "Format: x\n\nFiles: *\nLicense: GPL-2+ with",
            "Format: x\n\nFiles: *\nLicense: with exception",
            "Format: x\n\n License: orphan continuation\n\nFiles: *\nLicense: ((MIT",
            "Format: x\r\n\r\nFiles: *\r\nLicense: MIT\r\n",
            "Format: x\n\nFiles: *\nLicense: Ünïcödé-licence\n",
            "Format: x\n\nFiles: *\nLicense: GPL-99+\n",
            "Format: x\n\nFiles: *\nLicense: GPL-.+\n",
            "Format: x\n\nFiles: *\nLicense: +\n",
        ];
        for text in nasty {
            let l = license_from_copyright("p", Some(text));
            if let Some(e) = &l.expression {
                assert!(spdx::Expression::parse(e).is_ok(), "{text:?} -> {e}");
            }
            for r in &l.refs {
                assert!(!r.text.is_empty(), "{text:?}");
            }
        }
        assert_eq!(
            license_from_copyright("p", Some("Format: x\r\n\r\nFiles: *\r\nLicense: MIT\r\n"))
                .expression
                .as_deref(),
            Some("MIT")
        );
    }

    /// Every copyright file on the host parses to a valid expression whose
    /// every `LicenseRef-` has text. Also a sample of known packages.
    #[test]
    fn host_copyright_files() {
        let Ok(dir) = std::fs::read_dir("/usr/share/doc") else {
            eprintln!("skip: no /usr/share/doc");
            return;
        };
        let mut names: Vec<_> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        names.sort();
        let mut n = 0;
        let mut unmapped: BTreeMap<String, usize> = BTreeMap::new();
        for path in names {
            let file = path.join("copyright");
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            let pkg = path.file_name().unwrap().to_string_lossy().into_owned();
            let l = license_from_copyright(&pkg, Some(&text));
            let e = l
                .expression
                .as_deref()
                .expect("file exists: some expression");
            assert!(spdx::Expression::parse(e).is_ok(), "{pkg}: {e}");
            for r in &l.refs {
                assert!(e.contains(&r.id), "{pkg}: {} unused", r.id);
                assert!(!r.text.is_empty(), "{pkg}: {} empty", r.id);
                *unmapped.entry(r.name.clone()).or_default() += 1;
            }
            for tok in e.split([' ', '(', ')']) {
                if tok.starts_with("LicenseRef-") {
                    assert!(
                        l.refs.iter().any(|r| r.id == tok),
                        "{pkg}: {tok} has no text"
                    );
                }
            }
            n += 1;
        }
        eprintln!("{n} host copyright files parsed");
        if std::env::var_os("PLINTH_SHOW_UNMAPPED").is_some() {
            let mut v: Vec<_> = unmapped.into_iter().collect();
            v.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
            for (name, c) in v.iter().take(80) {
                eprintln!("{c:5} {name}");
            }
        }
        let known = [
            ("zlib1g", Some("Zlib")),
            ("libc6", Some("LicenseRef-debian-copyright-libc6")),
        ];
        for (pkg, want) in known {
            if let Ok(text) = std::fs::read_to_string(format!("/usr/share/doc/{pkg}/copyright")) {
                let got = license_from_copyright(pkg, Some(&text));
                eprintln!("{pkg}: {}", got.spdx_expression());
                if pkg == "libc6" {
                    assert_eq!(got.expression.as_deref(), want);
                }
            }
        }
    }
}
