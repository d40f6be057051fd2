//! `release-guardian export` and `import`: the state of ended and running
//! releases out of the configured store into a dump file, and from a dump
//! file into the configured store (any backend to any backend, e.g. SQLite
//! to PostgreSQL). The format and the backends' parts are the store's
//! ([`crate::store::dump`]); this module owns the commands: the config, the
//! files, the summary and the exit code.

use crate::store::dump::{Counts, DumpError};
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

/// The settings of `config`, or every error printed and `None`.
fn settings(command: &str, config: &Path) -> Option<crate::config::Settings> {
    match crate::config::load(config) {
        Ok(s) => Some(s),
        Err(errors) => {
            for e in &errors.errors {
                eprintln!("{e}");
            }
            eprintln!(
                "release-guardian {command}: {} has {} error(s)",
                config.display(),
                errors.errors.len()
            );
            None
        }
    }
}

/// Prints a failure: `FILE:LINE: message` when it is about a line of the
/// dump `file`, else the message.
fn fail(command: &str, file: &str, e: &DumpError) -> ExitCode {
    match e.line {
        Some(line) => eprintln!("release-guardian {command}: {file}:{line}: {}", e.message),
        None => eprintln!("release-guardian {command}: {}", e.message),
    }
    ExitCode::FAILURE
}

fn now() -> crate::model::Millis {
    crate::clock::Clock::now(&crate::clock::SystemClock)
}

/// `export --config FILE [--output DUMP]`: writes the dump to `output`
/// (replaced only once the whole dump is written; created readable by its
/// owner only: it holds everything the store does) or to stdout. Prints the
/// rows per table on stderr.
pub async fn export(config: &Path, output: Option<&Path>) -> ExitCode {
    let Some(settings) = settings("export", config) else {
        return ExitCode::FAILURE;
    };
    let store = settings.store.describe();
    let result = match output {
        None => {
            let out = BufWriter::new(std::io::stdout().lock());
            crate::store::export(&settings.store, out, now())
                .await
                .map(|(_, counts)| counts)
        }
        Some(path) => export_to_file(&settings.store, path).await,
    };
    let to = output.map_or("stdout".to_string(), |p| p.display().to_string());
    match result {
        Ok(counts) => {
            eprintln!("exported {counts} from {store} to {to}");
            ExitCode::SUCCESS
        }
        Err(e) => fail("export", &to, &e),
    }
}

/// Writes the dump to a temporary file beside `path` (mode 0600), then
/// renames it to `path`: a failed export leaves no partial dump behind.
async fn export_to_file(
    store: &crate::store::StoreSettings,
    path: &Path,
) -> Result<Counts, DumpError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| DumpError::new(format!("cannot write in {}: {e}", dir.display())))?;
    let (out, counts) = crate::store::export(store, BufWriter::new(file), now()).await?;
    let file = out
        .into_inner()
        .map_err(|e| DumpError::new(format!("cannot write {}: {}", path.display(), e.error())))?;
    file.as_file()
        .sync_all()
        .map_err(|e| DumpError::new(format!("cannot write {}: {e}", path.display())))?;
    file.persist(path)
        .map_err(|e| DumpError::new(format!("cannot write {}: {}", path.display(), e.error)))?;
    Ok(counts)
}

/// `import --config FILE [--input DUMP] [--force]`: loads the dump (from
/// `input`, or stdin) into the configured store; prints the rows per table.
pub async fn import(config: &Path, input: Option<&Path>, force: bool) -> ExitCode {
    let Some(settings) = settings("import", config) else {
        return ExitCode::FAILURE;
    };
    let store = settings.store.describe();
    let from = input.map_or("stdin".to_string(), |p| p.display().to_string());
    let result = match input {
        None => crate::store::import(&settings.store, std::io::stdin().lock(), force).await,
        Some(path) => match std::fs::File::open(path) {
            Ok(f) => crate::store::import(&settings.store, BufReader::new(f), force).await,
            Err(e) => Err(DumpError::new(format!("cannot read {from}: {e}"))),
        },
    };
    match result {
        Ok(counts) => {
            println!("imported {counts} from {from} into {store}");
            let _ = std::io::stdout().flush();
            ExitCode::SUCCESS
        }
        Err(e) => fail("import", &from, &e),
    }
}
