//! `report.html`: one self-contained page per run, beside `report.json`.
//!
//! The run's metadata, the summary table (a row per scenario, its verdict
//! and figures), then per scenario its verdict and reason, every check with
//! its figures and failure messages, the golden diff coloured, links to its
//! `trace.txt`, VCD, plots and `report.json`, and its plot inline (the
//! scenario's `plot.svg`). A checkbox (plain CSS; `#failed` in the address
//! ticks it) shows only the scenarios that did not pass.
//!
//! Self-contained: no network (a Content-Security-Policy forbids any fetch),
//! one inline style sheet and one small inline script that counts what the
//! filter shows and records any script error or policy violation in
//! `<body data-errors>` (the Chromium test reads it). Everything from the
//! run is escaped. The page is well-formed XML as well as HTML, so a test
//! can parse it without a browser.

use std::fmt::Write as _;
use std::path::Path;

use crate::golden::GoldenOutcome;
use crate::runner::ScenarioRun;

use super::report::{classname, reason, verdict, RunInfo, VERDICTS};

/// Text for HTML element content and attribute values: `& < > " '`
/// escaped, and control characters other than tab and line feed (which
/// neither HTML nor XML carries) as U+FFFD.
#[must_use]
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A path as a link from `report.html` (in `out`): relative when under
/// `out`, with each segment percent-encoded where a URL needs it.
fn href(out: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(out).unwrap_or(p);
    let mut s = String::new();
    for (k, part) in rel.components().enumerate() {
        if k > 0 {
            s.push('/');
        }
        for b in part.as_os_str().to_string_lossy().bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                s.push(char::from(b));
            } else {
                let _ = write!(s, "%{b:02X}");
            }
        }
    }
    s
}

const STYLE: &str = r##"
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em;margin:0 0 .3em}
h2{font-size:1.2em;margin:0}
table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f2f2f2}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.v{font-weight:bold;padding:0 4px;border-radius:3px}
.v-pass{color:#176f2c}.v-skipped{color:#8a6d00}
.v-fail,.v-golden-diff,.v-incomplete,.v-refused{color:#fff;background:#c62828}
section.scenario{border-top:2px solid #ddd;margin-top:1em;padding-top:.5em}
details>summary{cursor:pointer}
ul.failures{color:#b71c1c;margin:.2em 0}
pre{background:#f7f7f7;padding:.5em;overflow:auto;font-size:12px}
pre.diff .add{background:#e6ffed;color:#14532d}
pre.diff .del{background:#ffeef0;color:#7f1d1d}
pre.diff .hunk{color:#5b21b6}
pre.diff .file{color:#555;font-weight:bold}
.plot svg{max-width:100%;height:auto;border:1px solid #eee}
#only-failed:checked~main [data-ok="yes"]{display:none}
.muted{color:#666}
"##;

const SCRIPT: &str = r##"
(function(){
  var errors=[];
  function record(what){errors.push(what);document.body.setAttribute("data-errors",errors.join("; "));}
  window.addEventListener("error",function(e){record("error: "+e.message);});
  document.addEventListener("securitypolicyviolation",function(e){record("blocked: "+e.blockedURI);});
  var box=document.getElementById("only-failed");
  var shown=document.getElementById("shown");
  function count(){
    var rows=document.querySelectorAll("#summary tbody tr");
    var n=0;
    for(var i=0;rows.length>i;i++){if(rows[i].offsetParent!==null){n++;}}
    shown.textContent="showing "+n+" of "+rows.length+" scenarios";
  }
  if(location.hash==="#failed"){box.checked=true;}
  box.addEventListener("change",count);
  count();
  document.body.setAttribute("data-ready","yes");
})();
"##;

/// The page for a run whose artefacts are under `out`.
#[must_use]
pub fn page(info: &RunInfo, runs: &[ScenarioRun], out: &Path) -> String {
    let mut h = String::new();
    let e = escape;
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    h.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\"/>\n");
    let _ = writeln!(h, "<title>sharebench report: {}</title>", e(&info.started));
    let _ = writeln!(
        h,
        "<style>{STYLE}</style>\n</head>\n<body data-errors=\"\">"
    );
    let bad = runs
        .iter()
        .filter(|r| !matches!(verdict(r), "pass" | "skipped"))
        .count();
    let _ = writeln!(
        h,
        "<h1>sharebench run: {} scenarios, {bad} not passing</h1>",
        runs.len()
    );
    h.push_str("<table id=\"run\"><tbody>\n");
    let seed = info.seed.map_or_else(
        || "each scenario's own".to_string(),
        |s| format!("{s} (--seed) for every scenario"),
    );
    for (k, v) in [
        ("started", info.started.as_str()),
        ("bench", info.bench.as_str()),
        ("host", info.hostname.as_str()),
        ("revision", info.revision.as_str()),
        ("sharebench", info.sharebench_version.as_str()),
        ("firmware", info.firmware_version.as_str()),
        ("seed", seed.as_str()),
    ] {
        let _ = writeln!(h, "<tr><th>{k}</th><td>{}</td></tr>", e(v));
    }
    let _ = writeln!(
        h,
        "<tr><th>files</th><td><a href=\"report.json\">report.json</a> <a href=\"junit.xml\">junit.xml</a></td></tr>"
    );
    h.push_str("</tbody></table>\n<p id=\"counts\">");
    for v in VERDICTS {
        let n = runs.iter().filter(|r| verdict(r) == v).count();
        let _ = write!(h, "<span class=\"v v-{v}\">{v}</span> {n} &#160; ");
    }
    h.push_str("</p>\n");
    h.push_str("<input type=\"checkbox\" id=\"only-failed\"/><label for=\"only-failed\"> only scenarios that did not pass</label> <span id=\"shown\" class=\"muted\"></span>\n<main>\n");
    summary_table(&mut h, runs);
    for (i, r) in runs.iter().enumerate() {
        scenario_section(&mut h, i, r, out);
    }
    h.push_str("</main>\n<script>");
    h.push_str(SCRIPT);
    h.push_str("</script>\n</body>\n</html>\n");
    h
}

fn ok_attr(r: &ScenarioRun) -> &'static str {
    if matches!(verdict(r), "pass" | "skipped") {
        "yes"
    } else {
        "no"
    }
}

fn summary_table(h: &mut String, runs: &[ScenarioRun]) {
    h.push_str("<table id=\"summary\">\n<thead><tr><th>scenario</th><th>verdict</th><th>system</th><th>seed</th><th>offered/limit</th><th>measured/limit</th><th>slowest conv</th><th>simulated</th><th>wall</th></tr></thead>\n<tbody>\n");
    for (i, r) in runs.iter().enumerate() {
        let v = verdict(r);
        let ratio = |c| r.peak_ratio(c).map_or("-".into(), |p| format!("{p:.2}"));
        let conv = r
            .slowest_convergence_s()
            .map_or("-".into(), |s| format!("{s:.1} s"));
        let _ = writeln!(
            h,
            "<tr data-verdict=\"{v}\" data-ok=\"{}\"><td><a href=\"#sc-{i}\">{}</a></td><td><span class=\"v v-{v}\">{v}</span></td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.0} s</td><td class=\"num\">{:.2} s</td></tr>",
            ok_attr(r),
            escape(&r.scenario.name),
            escape(&r.scenario.system),
            r.seed,
            ratio("breaker-offered"),
            ratio("breaker-measured"),
            conv,
            r.sim_s,
            r.wall_s
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

fn scenario_section(h: &mut String, i: usize, r: &ScenarioRun, out: &Path) {
    let e = escape;
    let v = verdict(r);
    let failed = ok_attr(r) == "no";
    let _ = writeln!(
        h,
        "<section class=\"scenario\" id=\"sc-{i}\" data-verdict=\"{v}\" data-ok=\"{}\" data-name=\"{}\">",
        ok_attr(r),
        e(&r.scenario.name)
    );
    let _ = writeln!(
        h,
        "<h2>{} <span class=\"v v-{v}\">{v}</span></h2>",
        e(&r.scenario.name)
    );
    let _ = writeln!(
        h,
        "<p>{}<br/><span class=\"muted\">{} · {} · {} · seed {} · rerun: <code>sharebench run {} --seed {}</code></span></p>",
        e(&r.scenario.description),
        e(&r.scenario.system),
        e(&classname(&r.scenario.system)),
        e(&r.scenario.path.display().to_string()),
        r.seed,
        e(&r.scenario.path.display().to_string()),
        r.seed
    );
    if let Some(why) = reason(r) {
        let _ = writeln!(h, "<p class=\"reason\"><b>{v}:</b> {}</p>", e(&why));
    }
    // Links: the scenario's own files, then the run's JSON.
    h.push_str("<p class=\"links\">");
    for p in &r.artefacts {
        let name = p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let _ = write!(h, "<a href=\"{}\">{}</a> ", e(&href(out, p)), e(&name));
    }
    h.push_str("<a href=\"report.json\">report.json</a></p>\n");
    checks_table(h, r);
    golden(h, r);
    plot(h, r, failed);
    h.push_str("</section>\n");
}

fn checks_table(h: &mut String, r: &ScenarioRun) {
    if r.checks.is_empty() {
        h.push_str("<p class=\"muted\">no checks ran</p>\n");
        return;
    }
    h.push_str("<table class=\"checks\">\n<thead><tr><th>check</th><th>verdict</th><th>figures</th><th>failures</th></tr></thead>\n<tbody>\n");
    for c in &r.checks {
        let v = if c.skipped.is_some() {
            "skipped"
        } else if c.ok() {
            "pass"
        } else {
            "fail"
        };
        let figures: Vec<String> = c
            .figures
            .iter()
            .map(|(k, v)| format!("{} = {}", escape(k), escape(&v.to_string())))
            .collect();
        let mut notes = String::new();
        if let Some(why) = &c.skipped {
            let _ = write!(notes, "<span class=\"muted\">{}</span>", escape(why));
        }
        if c.known_violation {
            notes.push_str(if c.ok() {
                "<span class=\"muted\">known violation: the check caught the hazard, as expected</span>"
            } else {
                "<span>known violation: expected to fail here, but passed</span>"
            });
        }
        if !c.failures.is_empty() {
            notes.push_str("<ul class=\"failures\">");
            for f in &c.failures {
                let _ = write!(notes, "<li>{}</li>", escape(f));
            }
            if c.more_failures > 0 {
                let _ = write!(notes, "<li>... and {} more</li>", c.more_failures);
            }
            notes.push_str("</ul>");
        }
        let _ = writeln!(
            h,
            "<tr data-check=\"{}\" data-verdict=\"{v}\"><td>{}</td><td><span class=\"v v-{v}\">{v}</span></td><td>{}</td><td>{notes}</td></tr>",
            escape(c.name),
            escape(c.name),
            figures.join("<br/>")
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

fn golden(h: &mut String, r: &ScenarioRun) {
    match &r.golden {
        None => {}
        Some(GoldenOutcome::Match) => h.push_str("<p class=\"golden\">golden trace: matches</p>\n"),
        Some(GoldenOutcome::Missing { required }) => {
            h.push_str(if *required {
                "<p class=\"golden\"><b>golden trace: none</b> (CI requires one: write it with <code>sharebench run --bless</code>)</p>\n"
            } else {
                "<p class=\"golden\">golden trace: none yet</p>\n"
            });
        }
        Some(GoldenOutcome::NotChecked { reason }) => {
            let _ = writeln!(
                h,
                "<p class=\"golden\">golden trace: not checked ({})</p>",
                escape(reason)
            );
        }
        Some(GoldenOutcome::Differs { diff, first_line }) => {
            let _ = writeln!(
                h,
                "<p class=\"golden\"><b>golden trace differs</b> from line {first_line}:</p>"
            );
            h.push_str("<pre class=\"diff\">");
            for line in diff.lines() {
                let class = if line.starts_with("+++") || line.starts_with("---") {
                    "file"
                } else if line.starts_with('+') {
                    "add"
                } else if line.starts_with('-') {
                    "del"
                } else if line.starts_with("@@") {
                    "hunk"
                } else {
                    "ctx"
                };
                let _ = writeln!(h, "<span class=\"{class}\">{}</span>", escape(line));
            }
            h.push_str("</pre>\n");
        }
    }
}

/// The scenario's `plot.svg`, inline (its XML declaration dropped), in a
/// `<details>` open for a scenario that did not pass.
fn plot(h: &mut String, r: &ScenarioRun, open: bool) {
    let Some(svg_path) = r
        .artefacts
        .iter()
        .find(|p| p.extension().is_some_and(|x| x == "svg"))
    else {
        return;
    };
    let open = if open { " open=\"open\"" } else { "" };
    let _ = writeln!(h, "<details class=\"plot\"{open}><summary>plot</summary>");
    match std::fs::read_to_string(svg_path) {
        Ok(svg) => {
            let body = svg
                .find("<svg")
                .map_or(svg.as_str(), |k| &svg[k..])
                .trim_end();
            h.push_str(body);
            h.push('\n');
        }
        Err(err) => {
            let _ = writeln!(
                h,
                "<p>failed to read {}: {}</p>",
                escape(&svg_path.display().to_string()),
                escape(&err.to_string())
            );
        }
    }
    h.push_str("</details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'\u{1b}\n"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;\u{fffd}\n"
        );
    }

    #[test]
    fn links_are_relative_and_encoded() {
        let out = Path::new("target/sharebench");
        assert_eq!(
            href(out, Path::new("target/sharebench/a b&c/trace.txt")),
            "a%20b%26c/trace.txt"
        );
    }
}
