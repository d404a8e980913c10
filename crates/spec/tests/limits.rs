//! Resource limits: an alias bomb, a huge document, deep nesting and a flood of documents are
//! refused with a clear error instead of eating the machine.
//!
//! Each test prints how long loading took (run with `--nocapture` to see it) but never asserts on
//! it: the machines that run the tests are shared and noisy.

use std::fmt::Write as _;
use std::time::Instant;

use lull_spec::load::MAX_FILE_BYTES;
use lull_spec::{Catalog, Diagnostic, load_paths, load_str};

/// "Billion laughs": each level refers to the previous one nine times, so nine levels would
/// expand to 9^9 (387 million) strings.
fn alias_bomb() -> String {
    let mut yaml = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..9 {
        let prev = format!("*a{}", level - 1);
        let refs = [prev.as_str(); 9].join(", ");
        writeln!(yaml, "a{level}: &a{level} [{refs}]").expect("write to a string");
    }
    yaml
}

/// A valid spec whose description is `bytes` long.
fn spec_of_size(bytes: usize) -> String {
    let head = "name: big\ncommand: [x]\ndescription: ";
    let mut yaml = String::with_capacity(bytes + 1);
    yaml.push_str(head);
    yaml.push_str(&"x".repeat(bytes.saturating_sub(head.len() + 1)));
    yaml.push('\n');
    yaml
}

/// Loads through `load_str` and through a file in a temporary directory with `load_paths`,
/// printing the time each took, and returns both catalogs.
fn load_both_ways(label: &str, yaml: &str) -> [(Catalog, String); 2] {
    let start = Instant::now();
    let from_str = load_str(yaml, "limits.yaml");
    println!("{label}: load_str took {:?}", start.elapsed());

    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("limits.yaml");
    std::fs::write(&path, yaml).expect("write the spec file");
    let start = Instant::now();
    let from_file = load_paths(&[&path]);
    println!("{label}: load_paths took {:?}", start.elapsed());
    [
        (from_str, "limits.yaml".to_owned()),
        (from_file, path.display().to_string()),
    ]
}

/// The one error of a refused file.
fn single_error<'a>(catalog: &'a Catalog, file: &str) -> &'a Diagnostic {
    assert!(catalog.deployments.is_empty(), "nothing may load");
    let errors: Vec<&Diagnostic> = catalog
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .collect();
    assert_eq!(errors.len(), 1, "{:?}", catalog.diagnostics);
    assert_eq!(errors[0].file, file);
    errors[0]
}

#[test]
fn an_alias_bomb_is_refused() {
    let yaml = alias_bomb();
    for (catalog, file) in load_both_ways("alias bomb", &yaml) {
        let error = single_error(&catalog, &file);
        assert!(
            error
                .message
                .contains("the YAML is too large or too complex for a spec"),
            "{error}"
        );
        assert!(
            error.help.as_deref().is_some_and(|h| h.contains("aliases")),
            "{error}"
        );
        // Located where the expansion went over the limit, which is in the document.
        let at = error.at.expect("located");
        assert!((1..=9).contains(&at.line), "{error}");
    }
}

#[test]
fn many_aliases_of_one_large_anchor_are_refused() {
    let items = vec!["x"; 2_000].join(", ");
    let mut yaml = format!(
        "name: a\ncommand: [x]\ndescription: d\nkubernetes:\n  labels: {{}}\nbase: &big [{items}]\n"
    );
    yaml.push_str("copies:\n");
    for _ in 0..200 {
        yaml.push_str("  - *big\n");
    }
    for (catalog, file) in load_both_ways("large anchor", &yaml) {
        let error = single_error(&catalog, &file);
        assert!(
            error.message.contains("too large or too complex"),
            "{error}"
        );
    }
}

#[test]
fn a_ten_megabyte_document_is_refused_before_parsing() {
    let yaml = spec_of_size(10 * 1024 * 1024);
    for (catalog, file) in load_both_ways("10 MB document", &yaml) {
        let error = single_error(&catalog, &file);
        assert_eq!(
            error.message,
            format!(
                "is {} bytes; a spec file may be at most {MAX_FILE_BYTES} bytes (1 MiB)",
                yaml.len()
            )
        );
        assert!(
            error.help.as_deref().is_some_and(|h| h.contains("split")),
            "{error}"
        );
        assert_eq!(error.at, None, "a whole-file error has no position");
    }
}

#[test]
fn a_file_just_over_the_limit_is_refused_and_one_under_loads() {
    let limit = usize::try_from(MAX_FILE_BYTES).expect("the limit fits in memory");
    let over = spec_of_size(limit + 1);
    for (catalog, file) in load_both_ways("1 MiB + 1", &over) {
        single_error(&catalog, &file);
    }
    // A large but legal spec still loads: the limits leave room for real files.
    let under = spec_of_size(limit - 4096);
    for (catalog, _) in load_both_ways("1 MiB - 4 KiB", &under) {
        assert!(!catalog.has_errors(), "{:?}", catalog.diagnostics);
        assert_eq!(catalog.deployments.len(), 1);
    }
}

#[test]
fn deep_nesting_is_refused() {
    let depth = 200;
    let yaml = format!(
        "name: a\ncommand: [x]\ndescription: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    for (catalog, file) in load_both_ways("deep nesting", &yaml) {
        let error = single_error(&catalog, &file);
        assert!(
            error.message.contains("nested more than 32 levels deep"),
            "{error}"
        );
        assert_eq!(error.at.map(|p| p.line), Some(3), "{error}");
    }
}

#[test]
fn a_flood_of_documents_is_refused() {
    let yaml = "---\nname: a\ncommand: [x]\n".repeat(300);
    for (catalog, file) in load_both_ways("300 documents", &yaml) {
        let error = single_error(&catalog, &file);
        assert!(error.message.contains("more than 256 documents"), "{error}");
    }
}
