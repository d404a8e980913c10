//! How `validate` and `render` show what they found in the specs.

use lull_spec::Diagnostic;

/// Writes every diagnostic to stderr, one finding per entry, as `file:line:column: level: ...`.
pub fn print_diagnostics(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        eprintln!("{d}");
    }
}

/// How many of the diagnostics are errors and how many warnings.
pub fn counts(diagnostics: &[Diagnostic]) -> (usize, usize) {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    (errors, diagnostics.len() - errors)
}

/// The one-line verdict: `2 deployments valid, 1 warning` or `3 errors, 1 warning`.
pub fn summary(deployments: usize, diagnostics: &[Diagnostic]) -> String {
    let (errors, warnings) = counts(diagnostics);
    if errors > 0 {
        return format!(
            "{}, {}",
            plural(errors, "error", "errors"),
            plural(warnings, "warning", "warnings")
        );
    }
    let valid = format!("{} valid", plural(deployments, "deployment", "deployments"));
    if warnings == 0 {
        valid
    } else {
        format!("{valid}, {}", plural(warnings, "warning", "warnings"))
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use lull_spec::Severity;

    use super::*;

    fn finding(severity: Severity) -> Diagnostic {
        Diagnostic {
            severity,
            file: "a.yaml".to_owned(),
            at: None,
            path: String::new(),
            deployment: None,
            message: "m".to_owned(),
            help: None,
        }
    }

    #[test]
    fn summaries_count_in_words() {
        assert_eq!(summary(1, &[]), "1 deployment valid");
        assert_eq!(
            summary(2, &[finding(Severity::Warning)]),
            "2 deployments valid, 1 warning"
        );
        assert_eq!(
            summary(
                0,
                &[
                    finding(Severity::Error),
                    finding(Severity::Error),
                    finding(Severity::Warning),
                    finding(Severity::Warning)
                ]
            ),
            "2 errors, 2 warnings"
        );
        assert_eq!(
            summary(0, &[finding(Severity::Error)]),
            "1 error, 0 warnings"
        );
    }
}
