//! The change report as Markdown, fit for a pull-request body: a summary,
//! per distribution a table of package changes and a section per change
//! (where it comes from, CVEs, the images it touches, its changelog
//! entries folded away), the decisions the definitions need, the CVEs, and
//! the image differences once `diff` added them. Long parts are cut so the
//! whole stays below what code hosts accept in a pull-request body; the
//! JSON report keeps everything.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Change, ChangeReport, DistributionChanges};
use crate::diff::{ImagesDiff, PlatformDiff, megabytes, short};
use crate::lockfile::ChangeKind;
use crate::support::time::rfc3339;

/// GitHub refuses pull-request bodies above 65536 characters.
const MAX_BODY: usize = 60_000;
/// The most of one package's changelog shown.
const MAX_CHANGELOG: usize = 6_000;
/// The most paths listed for one image difference.
const MAX_PATHS: usize = 40;

/// The report as Markdown.
pub fn render(report: &ChangeReport) -> String {
    let mut out = String::new();
    summary(&mut out, report);
    for d in &report.distributions {
        distribution(&mut out, d);
    }
    if !report.cves.is_empty() {
        out.push_str("## CVEs\n\n");
        for cve in &report.cves {
            let mut fixed_in: Vec<String> = Vec::new();
            for d in &report.distributions {
                for c in d.changes.iter().filter(|c| c.cves.contains(cve)) {
                    fixed_in.push(format!("{} ({})", c.package, d.distribution));
                }
            }
            let _ = writeln!(out, "- {cve}: {}", fixed_in.join(", "));
        }
        out.push('\n');
    }
    if let Some(images) = &report.images {
        images_section(&mut out, images);
    }
    cut(out)
}

fn summary(out: &mut String, report: &ChangeReport) {
    out.push_str("# Golden image update\n\n");
    if report.distributions.iter().all(|d| d.changes.is_empty()) {
        out.push_str("No package changes: the lockfiles are current with the archive.\n\n");
        return;
    }
    for d in &report.distributions {
        if d.changes.is_empty() {
            let _ = writeln!(out, "- **{}**: no package changes", d.distribution);
            continue;
        }
        let mut counts: BTreeMap<ChangeKind, usize> = BTreeMap::new();
        for c in &d.changes {
            *counts.entry(c.change).or_default() += 1;
        }
        let security = d
            .changes
            .iter()
            .filter(|c| c.security && c.change == ChangeKind::Upgraded)
            .count();
        let parts: Vec<String> = counts
            .iter()
            .map(|(kind, n)| {
                if *kind == ChangeKind::Upgraded && security > 0 {
                    format!("{n} {} ({security} from security)", kind.as_str())
                } else {
                    format!("{n} {}", kind.as_str())
                }
            })
            .collect();
        let _ = writeln!(out, "- **{}**: {}", d.distribution, parts.join(", "));
    }
    if !report.cves.is_empty() {
        let _ = writeln!(out, "- CVEs mentioned: {}", report.cves.join(", "));
    }
    out.push('\n');
}

fn distribution(out: &mut String, d: &DistributionChanges) {
    let _ = writeln!(out, "## {} ({})\n", d.distribution, d.codename);
    let moved: Vec<String> = d
        .releases
        .iter()
        .map(|r| match &r.old_date {
            Some(old) if *old == r.new_date => format!("{} {} (unchanged)", r.suite, r.new_date),
            Some(old) => format!("{} {old} → {}", r.suite, r.new_date),
            None => format!("{} {}", r.suite, r.new_date),
        })
        .collect();
    let _ = writeln!(out, "Release files: {}.\n", moved.join("; "));
    if !d.current
        && let Some(old) = d.old_epoch.filter(|old| *old != d.new_epoch)
    {
        let when = |epoch: u64| rfc3339(epoch).unwrap_or_else(|_| epoch.to_string());
        let _ = writeln!(
            out,
            "The epoch moves from {} to {}: every image of {} is rebuilt with new \
             timestamps, including those no changed package touches.\n",
            when(old),
            when(d.new_epoch),
            d.distribution
        );
    }
    if d.changes.is_empty() {
        let _ = writeln!(out, "No package changes in `{}`.\n", d.lockfile);
    } else {
        out.push_str("| package | change | version | suite | architectures | images |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        for c in &d.changes {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                c.package,
                change_label(c),
                versions(c),
                c.new_suite
                    .as_deref()
                    .or(c.old_suite.as_deref())
                    .unwrap_or(""),
                c.architectures.join(", "),
                c.images
                    .iter()
                    .map(|i| format!("`{}`", i.repository))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        out.push('\n');
        for c in &d.changes {
            change(out, c);
        }
    }
    decisions(out, d);
}

fn change_label(c: &Change) -> String {
    if c.security && c.change == ChangeKind::Upgraded {
        "**security update**".to_owned()
    } else if c.change == ChangeKind::Downgraded {
        "**downgraded**".to_owned()
    } else {
        c.change.as_str().to_owned()
    }
}

fn versions(c: &Change) -> String {
    match (&c.old_version, &c.new_version) {
        (Some(a), Some(b)) if a != b => format!("{a} → {b}"),
        (_, Some(v)) | (Some(v), None) => v.clone(),
        (None, None) => String::new(),
    }
}

fn change(out: &mut String, c: &Change) {
    let _ = writeln!(out, "### {} {}\n", c.package, versions(c));
    let mut what = match (c.change, &c.new_suite, &c.old_suite) {
        (ChangeKind::Upgraded, Some(s), _) if c.security => format!("Security update from {s}"),
        (ChangeKind::Removed, _, _) => "Removed: no image needs it any more".to_owned(),
        (ChangeKind::Moved, Some(s), Some(o)) => format!("Same version, now from {s} (was {o})"),
        (kind, Some(s), _) => format!("{} from {s}", capitalised(kind.as_str())),
        (kind, None, _) => capitalised(kind.as_str()),
    };
    let _ = write!(what, " ({}).", c.architectures.join(", "));
    if !c.cves.is_empty() {
        let _ = write!(what, " CVEs: {}.", c.cves.join(", "));
    }
    let _ = writeln!(out, "{what}\n");
    if !c.images.is_empty() {
        let touched: Vec<String> = c
            .images
            .iter()
            .map(|i| format!("`{}` ({})", i.repository, i.tags.join(", ")))
            .collect();
        let _ = writeln!(out, "Touches {}.\n", touched.join(", "));
    }
    if !c.required_by.is_empty() {
        let _ = writeln!(out, "Required by: {}.\n", c.required_by.join("; "));
    }
    if let Some(note) = &c.changelog_note {
        let _ = writeln!(out, "Changelog: {note}.\n");
    }
    if !c.changelog.is_empty() {
        let mut text = c
            .changelog
            .iter()
            .map(|e| e.text.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        if text.len() > MAX_CHANGELOG {
            let at = floor_char_boundary(&text, MAX_CHANGELOG);
            text.truncate(at);
            text.push_str("\n[… cut; the JSON report has every entry]");
        }
        let fence = fence_for(&text);
        let n = c.changelog.len();
        let _ = writeln!(
            out,
            "<details><summary>Debian changelog ({n} {})</summary>\n\n{fence}\n{text}\n{fence}\n\n</details>\n",
            if n == 1 { "entry" } else { "entries" }
        );
    }
}

fn decisions(out: &mut String, d: &DistributionChanges) {
    if d.new_dependencies.is_empty() && d.unused_exclusions.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "### Decisions for the image definitions ({})\n",
        d.distribution
    );
    for n in &d.new_dependencies {
        let _ = writeln!(
            out,
            "- **New dependency** `{}` {} ({}), wanted by {}. Keep it, or leave it out with an \
             `[[exclude]]` and its reason in the image's definition.",
            n.package,
            n.version,
            n.architectures.join(", "),
            n.wanted_by.join("; ")
        );
    }
    for u in &d.unused_exclusions {
        let since = if u.since_this_change {
            "since this update"
        } else {
            "already before this update"
        };
        let _ = writeln!(
            out,
            "- **Exclusion no longer needed**: `{}` in image `{}` (\"{}\"): no package wants it \
             {since}; remove it from the definition.",
            u.package, u.image, u.reason
        );
    }
    out.push('\n');
}

fn images_section(out: &mut String, images: &ImagesDiff) {
    out.push_str("## Images\n\n");
    let _ = writeln!(
        out,
        "`{}` → `{}`: {} tags differ, {} are the same.\n",
        images.old,
        images.new,
        images.tags.len(),
        images.unchanged
    );
    if images.tags.is_empty() {
        return;
    }
    out.push_str("| image | arch | old digest | new digest | old size | new size |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for t in &images.tags {
        let _ = writeln!(
            out,
            "| `{}:{}` | (index) | `{}` | `{}` | | |",
            t.repository,
            t.tag,
            short(t.old_digest.as_deref()),
            short(t.new_digest.as_deref())
        );
        for p in &t.platforms {
            let _ = writeln!(
                out,
                "| | {} | `{}` | `{}` | {} | {} |",
                p.architecture,
                short(p.old_manifest.as_deref()),
                short(p.new_manifest.as_deref()),
                megabytes(p.old_size),
                megabytes(p.new_size)
            );
        }
    }
    out.push('\n');
    // The same content difference shows in many tags (latest and nonroot
    // share their layers): list each once, with where it shows.
    let mut groups: Vec<(Vec<String>, &PlatformDiff)> = Vec::new();
    for t in &images.tags {
        for p in &t.platforms {
            let here = format!("{}:{} ({})", t.repository, t.tag, p.architecture);
            match groups.iter_mut().find(|(_, q)| same_content(q, p)) {
                Some((places, _)) => places.push(here),
                None => groups.push((vec![here], p)),
            }
        }
    }
    for (places, p) in groups {
        if p.packages.is_empty() && p.files.is_empty() && p.mtime_only == 0 {
            continue;
        }
        let _ = writeln!(
            out,
            "<details><summary>{}: {}, {} changed, {} with a new mtime only</summary>\n",
            places.join(", "),
            count(p.packages.len(), "package", "packages"),
            count(p.files.len(), "path", "paths"),
            count(p.mtime_only, "path", "paths")
        );
        for pkg in &p.packages {
            let _ = writeln!(out, "- {}", pkg.describe());
        }
        for f in p.files.iter().take(MAX_PATHS) {
            let _ = writeln!(out, "- `{}`", f.describe());
        }
        if p.files.len() > MAX_PATHS {
            let _ = writeln!(out, "- … and {} more paths", p.files.len() - MAX_PATHS);
        }
        out.push_str("\n</details>\n\n");
    }
}

fn same_content(a: &PlatformDiff, b: &PlatformDiff) -> bool {
    a.architecture == b.architecture
        && a.packages == b.packages
        && a.files == b.files
        && a.mtime_only == b.mtime_only
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A code fence longer than any run of backticks in `text`.
fn fence_for(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    (0..=at.min(text.len()))
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0)
}

/// The body cut below [`MAX_BODY`] at a line end, saying so.
fn cut(mut body: String) -> String {
    if body.len() <= MAX_BODY {
        return body;
    }
    let at = body[..floor_char_boundary(&body, MAX_BODY)]
        .rfind('\n')
        .unwrap_or(0);
    body.truncate(at);
    body.push_str("\n\n[… cut to fit a pull-request body; the JSON report has everything]\n");
    body
}

/// `1 package`, `2 packages`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
