//! `prs settings`: every setting with its value, env variable and description.

use datafusion::common::config::ExtensionOptions;
use datafusion_prs::PrsConfig;

use super::error::CliError;
use super::print::out;

/// Print every setting with its current value (defaults + environment), or with `markdown` the
/// table of defaults in docs/sql.md.
pub fn print_settings(markdown: bool) -> Result<(), CliError> {
    if markdown {
        out(&settings_markdown());
        return Ok(());
    }
    let cfg = PrsConfig::from_env()?;
    for entry in cfg.entries() {
        let name = entry.key.trim_start_matches("prs.");
        out(&format!(
            "prs.{:<34} {:<28} {}\n    {}\n",
            name,
            PrsConfig::env_name(name),
            entry.value.unwrap_or_default().replace('\n', "\\n"),
            entry.description
        ));
    }
    Ok(())
}

/// The settings as docs/sql.md's markdown table (defaults, not the environment).
pub fn settings_markdown() -> String {
    let mut out = String::from("| setting | env | default | meaning |\n|---|---|---|---|\n");
    for entry in PrsConfig::default().entries() {
        let name = entry.key.trim_start_matches("prs.");
        let value = entry.value.unwrap_or_default();
        let value = if value.is_empty() {
            "(empty)".to_string()
        } else {
            format!("`{}`", value.replace('\n', "\\n").replace('|', "\\|"))
        };
        out.push_str(&format!(
            "| `prs.{name}` | `{}` | {value} | {} |\n",
            PrsConfig::env_name(name),
            entry.description.replace('|', "\\|")
        ));
    }
    out
}
