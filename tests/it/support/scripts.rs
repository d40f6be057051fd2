//! Executable `#!/bin/sh` scripts written into a test's temp dir: rollback
//! hooks, exec'd directly by the code under test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Writes `DIR/NAME` as `#!/bin/sh`, then `body`, mode 0755; returns its path.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}
