//! One module per subcommand, plus how findings about specs are shown.

pub mod activator;
pub mod autoscaler;
pub mod completions;
pub mod controller;
pub mod fixture;
pub mod logs;
pub mod render;
pub mod report;
pub mod secret;
pub mod simulate;
pub mod up;
pub mod validate;
