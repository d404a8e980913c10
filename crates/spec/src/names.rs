//! Deployment names and their slugs.
//!
//! Paperspace lets a deployment be called `my cool deployment`. lull keeps that for display and
//! derives a slug, `my-cool-deployment`, a DNS-1123 label that names routes, processes and
//! Kubernetes objects.

/// Longest DNS-1123 label.
pub const MAX_LABEL_LEN: usize = 63;

/// The slug of a display name: lower case, every run of other characters as one `-`, no `-` at
/// either end. It may still be too long or empty; [`is_dns_label`] tells.
pub fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    let mut pending_dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_dash && !slug.is_empty() {
                slug.push('-');
            }
            pending_dash = false;
            slug.push(c.to_ascii_lowercase());
        } else {
            pending_dash = true;
        }
    }
    slug
}

/// Whether `s` is a DNS-1123 label: 1 to 63 of `a-z`, `0-9` and `-`, starting and ending with an
/// alphanumeric.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LABEL_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS-1123 subdomain (dot-separated labels, at most 253 characters), as host
/// names and Kubernetes namespaces-with-dots are.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_become_labels() {
        assert_eq!(slugify("my cool deployment"), "my-cool-deployment");
        assert_eq!(slugify("  BERT Sentiment API v2 "), "bert-sentiment-api-v2");
        assert_eq!(slugify("resnet_prod--1"), "resnet-prod-1");
        assert_eq!(slugify("!!!"), "");
        assert!(is_dns_label("my-cool-deployment"));
        assert!(!is_dns_label("-x"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("api.example.com"));
        assert!(!is_dns_subdomain("api..example.com"));
    }
}
