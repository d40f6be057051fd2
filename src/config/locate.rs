//! Maps a key path (`services[0].probes[1].timeout`) to its line and column in the TOML or YAML text.
