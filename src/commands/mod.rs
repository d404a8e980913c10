//! One module per subcommand, plus how findings about specs are shown.

pub mod completions;
pub mod render;
pub mod report;
pub mod secret;
pub mod validate;
