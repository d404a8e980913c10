//! Fuzzes the spec loader: any UTF-8 text must load to deployments and diagnostics, never panic,
//! and every error must say where it is.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let catalog = lull_spec::load_str(text, "fuzz.yaml");
    for d in &catalog.diagnostics {
        // Rendering must not panic either, and positions are 1-based.
        let _ = d.to_string();
        if let Some(at) = d.at {
            assert!(at.line >= 1 && at.column >= 1, "{d}");
        }
        // Every problem the schema check misses is a bug: it loses the field path.
        assert_ne!(
            d.help.as_deref(),
            Some(lull_spec::load::UNCAUGHT_HELP),
            "{d}"
        );
    }
    // A loaded spec is valid: loading what it serialises to must give it back.
    for deployment in &catalog.deployments {
        if let Ok(yaml) = serde_saphyr::to_string(&deployment.spec) {
            let again = lull_spec::load_str(&yaml, "again.yaml");
            assert!(!again.has_errors(), "{yaml}\n{:?}", again.diagnostics);
            assert_eq!(again.deployments.len(), 1, "{yaml}");
            assert_eq!(again.deployments[0].spec, deployment.spec, "{yaml}");
        }
    }
});
