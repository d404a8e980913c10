//! Deployment keys.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// Names one deployment in every plane: its slug, a DNS-1123 label. Cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct DeploymentKey(Arc<str>);

impl DeploymentKey {
    /// A key for a slug.
    pub fn new(slug: impl AsRef<str>) -> Self {
        Self(Arc::from(slug.as_ref()))
    }

    /// The slug.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeploymentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeploymentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Borrow<str> for DeploymentKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for DeploymentKey {
    fn from(slug: &str) -> Self {
        Self::new(slug)
    }
}
