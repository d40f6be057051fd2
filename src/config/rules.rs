//! Rule packs: YAML files of checks, compiled into [`super::CheckSpec`]s.
