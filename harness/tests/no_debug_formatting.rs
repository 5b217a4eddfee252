//! No Rust debug formatting (`{:?}`, `{x:?}`, `{:#?}`) reaches a message,
//! a trace or a report: what a person reads says `arrive st1`, `no-diode`,
//! `"zzz"`, never `Arrive(0)`, `NoDiode` or `Some("zzz")`. Checked over
//! every non-test source file of the harness, the CLI, the firmware and the
//! rig (test modules and test files may print what they like in their own
//! assertion messages).

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.is_dir() {
            if name != "tests" {
                sources(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") && name != "tests.rs" {
            out.push(p);
        }
    }
}

/// Debug placeholders in `code` (a file's text up to its test module), as
/// `(line, text)`.
fn debug_placeholders(code: &str) -> Vec<(usize, String)> {
    let re = regex::Regex::new(r"\{[A-Za-z0-9_.]*:[^{}]*\?\}").expect("regex");
    code.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter_map(|(k, l)| {
            // `{{` and `}}` are literal braces, not placeholders.
            let l = l.replace("{{", "").replace("}}", "");
            re.find(&l).map(|m| (k + 1, m.as_str().to_string()))
        })
        .collect()
}

#[test]
fn the_scan_finds_debug_placeholders() {
    assert_eq!(
        debug_placeholders("let a = 1;\nformat!(\"{:?} {x:#?} {y:>4?}\");\n"),
        vec![(2, "{:?}".to_string())]
    );
    assert_eq!(debug_placeholders("write!(f, \"{k:?}\")").len(), 1);
    assert!(debug_placeholders("format!(\"{x} {y:>4} {{:?}}\")").is_empty());
}

#[test]
fn no_debug_formatting_outside_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for d in ["harness/src", "src", "firmware/src", "rig/src"] {
        sources(&root.join(d), &mut files);
    }
    assert!(files.len() > 20, "found the sources: {}", files.len());
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable source");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (line, what) in debug_placeholders(code) {
            found.push(format!("{}:{line}: {what}", f.display()));
        }
    }
    assert!(
        found.is_empty(),
        "debug formatting in what people read:\n{}",
        found.join("\n")
    );
}
