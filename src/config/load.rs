//! Loading the config file: defaults < file < `RG__SECTION__KEY` environment,
//! then validation of everything (rule packs included), collecting every
//! error with its `FILE:LINE:COL`.

use super::Settings;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem, located where the offending key stands.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Every error found (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads and validates `path`, with environment overrides from the process.
pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        errors: vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message: format!("cannot read: {e}"),
        }],
    })?;
    let env: Vec<(String, String)> = std::env::vars().collect();
    load_str(&text, path, &env)
}

/// Loads from text; `path` locates errors and anchors relative paths; `env`
/// supplies `RG__SECTION__KEY` overrides.
pub fn load_str(
    _text: &str,
    path: &Path,
    _env: &[(String, String)],
) -> Result<Settings, ConfigErrors> {
    Err(ConfigErrors {
        errors: vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message: "loader not built yet".into(),
        }],
    })
}
