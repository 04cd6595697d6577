//! Reading the configuration: a TOML file, then environment overrides.
//!
//! Overrides: `SFN_WORKER_<SECTION>__<FIELD>`, e.g.
//! `SFN_WORKER_WORKER__MAX_CONCURRENCY=64` or `SFN_WORKER_AWS__REGION=eu-west-1`.
//! Values are parsed like TOML values (`64`, `true`, text). Bindings
//! (`[[activity]]`) come from the file only.

use std::fmt::Write as _;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use sfn_worker_core::{Config, Plan, Registry};

/// The prefix of overrides; the section and field follow, joined by `__`.
const ENV_PREFIX: &str = "SFN_WORKER_";
const ENV_SEPARATOR: &str = "__";

/// The variable holding the configuration's text, for platforms where a
/// file is awkward (ECS task definitions, SSM parameters as secrets).
pub(crate) const CONFIG_TEXT_VARIABLE: &str = "SFN_WORKER_CONFIG_TOML";

/// The variable naming the configuration file (`--config` of the CLI).
pub(crate) const CONFIG_FILE_VARIABLE: &str = "SFN_WORKER_CONFIG";

/// Where the configuration comes from, and how it is read: the same loader
/// the `sfn-worker` binary uses, for an application that embeds the worker.
///
/// [`ConfigSource::load`] reads the TOML, applies the
/// `SFN_WORKER_<SECTION>__<FIELD>` environment overrides (for example
/// `SFN_WORKER_WORKER__MAX_CONCURRENCY=64`) and checks every field's type; an
/// error names the file (or variable), each offending field and what was
/// expected.
///
/// ```
/// let source = sfn_worker::ConfigSource::text(r#"
/// [[activity]]
/// arn = "arn:aws:states:us-east-1:123456789012:activity:resize"
/// handler = "echo"
/// "#);
/// let config = source.load().unwrap();
/// assert_eq!(config.activities.len(), 1);
/// let err = sfn_worker::ConfigSource::text("[worker]\nmax_concurency = 8").load().unwrap_err();
/// assert!(err.to_string().contains("worker.max_concurency: unknown field"), "{err}");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConfigSource {
    /// A TOML file.
    File(PathBuf),
    /// TOML text: the text of `SFN_WORKER_CONFIG_TOML`, or the application's own.
    Text(String),
}

impl ConfigSource {
    /// A TOML file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::File(path.into())
    }

    /// TOML text.
    pub fn text(toml: impl Into<String>) -> Self {
        Self::Text(toml.into())
    }

    /// Where the binary looks: the file named by `SFN_WORKER_CONFIG`, else
    /// the text of `SFN_WORKER_CONFIG_TOML`.
    pub fn from_env() -> Result<Self, crate::Error> {
        Self::resolve(std::env::var_os(CONFIG_FILE_VARIABLE).map(PathBuf::from))
            .map_err(crate::Error::Config)
    }

    /// Read it, apply the `SFN_WORKER_*` overrides, check the types. The
    /// bindings' handlers are checked when the worker is built (they need
    /// its registry): `sfn-worker check` and [`crate::DaemonBuilder::build`].
    pub fn load(&self) -> Result<Config, crate::Error> {
        load(self).map_err(crate::Error::Config)
    }

    /// `--config` / `SFN_WORKER_CONFIG` if given, else `SFN_WORKER_CONFIG_TOML`.
    pub(crate) fn resolve(path: Option<PathBuf>) -> Result<Self, String> {
        match path {
            Some(path) => Ok(Self::File(path)),
            None => std::env::var(CONFIG_TEXT_VARIABLE).map(Self::Text).map_err(|_| {
                format!("no configuration: give --config FILE, SFN_WORKER_CONFIG=FILE, or the TOML itself in {CONFIG_TEXT_VARIABLE}")
            }),
        }
    }

    /// How errors name it: the file's path, or the variable.
    pub fn name(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Text(_) => CONFIG_TEXT_VARIABLE.to_owned(),
        }
    }
}

/// Load, override and validate; on failure, one message naming the file,
/// every offending field and what was expected.
pub(crate) fn load_plan(source: &ConfigSource, registry: &Registry) -> Result<Plan, String> {
    plan(load(source)?, &source.name(), registry)
}

/// Validate a loaded configuration against the registry; errors name `name`.
pub(crate) fn plan(config: Config, name: &str, registry: &Registry) -> Result<Plan, String> {
    Plan::build(config, registry).map_err(|errors| {
        let mut msg = format!("{name}: invalid configuration");
        for e in errors {
            let _ = write!(msg, "\n  {name}: {}: {}", e.field, e.message);
        }
        msg
    })
}

/// Load, override and validate what the workflow commands use: `[aws]`
/// and `[workflows]`. Bindings must parse, but their handlers are not
/// built (this binary may not have a custom binary's kinds).
pub(crate) fn load_for_workflows(source: &ConfigSource) -> Result<Config, String> {
    let config = load(source)?;
    let errors = config.workflows.validate();
    if errors.is_empty() {
        return Ok(config);
    }
    let name = source.name();
    let mut msg = format!("{name}: invalid configuration");
    for e in errors {
        let _ = write!(msg, "\n  {name}: {}: {}", e.field, e.message);
    }
    Err(msg)
}

fn load(source: &ConfigSource) -> Result<Config, String> {
    let file = match source {
        ConfigSource::File(path) => {
            if let Err(e) = std::fs::metadata(path) {
                return Err(format!(
                    "{}: cannot read the configuration file: {e}",
                    path.display()
                ));
            }
            Toml::file_exact(path)
        }
        ConfigSource::Text(text) => Toml::string(text),
    };
    // Only SECTION__FIELD names are overrides, so SFN_WORKER_CONFIG and any
    // other SFN_WORKER_* variable (the scripts use some) are left alone.
    let figment = Figment::from(file).merge(
        Env::prefixed(ENV_PREFIX)
            .filter(|key| key.as_str().contains(ENV_SEPARATOR))
            .split(ENV_SEPARATOR),
    );
    figment
        .extract::<Config>()
        .map_err(|err| describe(&source.name(), err))
}

fn describe(name: &str, err: figment::Error) -> String {
    let mut msg = format!("{name}: invalid configuration");
    for e in err {
        let source = match &e.metadata {
            Some(md) if md.name.contains("environment") => {
                let name = e.path.join(ENV_SEPARATOR).to_ascii_uppercase();
                format!("environment variable {ENV_PREFIX}{name}")
            }
            _ => name.to_owned(),
        };
        let field = field_path(&e.path);
        let problem = match &e.kind {
            figment::error::Kind::UnknownField(found, expected) => {
                format!(
                    "unknown field `{found}`; expected one of: {}",
                    expected.join(", ")
                )
            }
            figment::error::Kind::UnknownVariant(found, expected) => {
                format!(
                    "unknown value `{found}`; expected one of: {}",
                    expected.join(", ")
                )
            }
            kind => kind.to_string(),
        };
        if field.is_empty() {
            let _ = write!(msg, "\n  {source}: {problem}");
        } else {
            let _ = write!(msg, "\n  {source}: {field}: {problem}");
        }
    }
    msg
}

/// `["activity", "0", "pollers"]` -> `activity[0].pollers`.
fn field_path(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if part.chars().all(|c| c.is_ascii_digit()) && !out.is_empty() {
            let _ = write!(out, "[{part}]");
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        sfn_worker_handlers::builtins()
    }

    fn file(name: &str, body: &str) -> ConfigSource {
        ConfigSource::File(write(name, body))
    }

    fn write(name: &str, body: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sfn-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    const GOOD: &str = r#"
[worker]
max_concurrency = 8
[[activity]]
arn = "arn:aws:states:us-east-1:000000000000:activity:resize"
handler = "exec"
[activity.params]
command = ["cat"]
"#;

    #[test]
    fn a_good_file_loads() {
        let plan = load_plan(&file("good.toml", GOOD), &registry()).unwrap();
        assert_eq!(plan.config().worker.max_concurrency.get(), 8);
        assert_eq!(&*plan.activities()[0].binding.name, "resize");
    }

    #[test]
    fn errors_name_file_field_and_expectation() {
        let cases = [
            (
                "unknown.toml",
                GOOD.replace("max_concurrency = 8", "max_concurency = 8"),
                "worker.max_concurency: unknown field `max_concurency`; expected one of: max_concurrency, shutdown_grace_secs",
            ),
            (
                "zero.toml",
                GOOD.replace("max_concurrency = 8", "max_concurrency = 0"),
                "worker.max_concurrency: invalid value signed int `0`, expected a nonzero usize",
            ),
            (
                "arn.toml",
                GOOD.replace("activity:resize", "stateMachine:resize"),
                "activity[0].arn: expected an activity ARN",
            ),
            (
                "kind.toml",
                GOOD.replace("\"exec\"", "\"exce\""),
                "activity[0].handler: unknown handler kind `exce`",
            ),
            (
                "params.toml",
                GOOD.replace("command = [\"cat\"]", "comand = [\"cat\"]"),
                "activity[0].params.comand: unknown field `comand`",
            ),
            (
                "syntax.toml",
                GOOD.replace("[worker]", "[worker"),
                "syntax.toml",
            ),
        ];
        for (name, body, expected) in cases {
            let path = write(name, &body);
            let err = load_plan(&ConfigSource::File(path.clone()), &registry())
                .err()
                .unwrap();
            assert!(
                err.contains(&format!("{}: ", path.display())),
                "{name}: {err}"
            );
            println!("{err}");
            assert!(
                err.contains(expected),
                "{name}: expected {expected:?} in:\n{err}"
            );
        }
    }

    const QUEUE: &str = r#"
[[queue]]
url = "https://sqs.us-east-1.amazonaws.com/123456789012/callbacks"
handler = "echo"
input_pointer = "/input"
"#;

    #[test]
    fn queue_bindings_are_checked_with_the_same_quality() {
        assert!(load_plan(&file("queue-ok.toml", QUEUE), &registry()).is_ok());
        let cases = [
            (
                "q-url.toml",
                QUEUE.replace("/123456789012/", "/1234/"),
                "queue[0].url: expected a queue URL like https://sqs.us-east-1.amazonaws.com/123456789012/NAME",
            ),
            (
                "q-ptr.toml",
                QUEUE.replace("\"/input\"", "\"input\""),
                "queue[0].input_pointer: expected a JSON pointer starting with /",
            ),
            (
                "q-vis.toml",
                format!("{QUEUE}visibility_timeout_secs = 50000\n"),
                "queue[0].visibility_timeout_secs: expected at most 43200",
            ),
            (
                "q-enum.toml",
                format!("{QUEUE}on_malformed = \"drop\"\n"),
                "queue[0].on_malformed: unknown value `drop`; expected one of: leave, delete",
            ),
        ];
        for (name, body, expected) in cases {
            let path = write(name, &body);
            let err = load_plan(&ConfigSource::File(path.clone()), &registry())
                .err()
                .unwrap();
            assert!(
                err.contains(&format!("{}: {expected}", path.display())),
                "{name}: expected {expected:?} in:\n{err}"
            );
        }
    }

    #[test]
    fn a_missing_file_says_so() {
        let err = load_plan(
            &ConfigSource::File("/nonexistent/sfn.toml".into()),
            &registry(),
        )
        .err()
        .unwrap();
        assert!(
            err.starts_with("/nonexistent/sfn.toml: cannot read"),
            "{err}"
        );
    }

    #[test]
    fn the_configuration_can_come_as_text_and_errors_name_the_variable() {
        assert!(load_plan(&ConfigSource::Text(GOOD.to_owned()), &registry()).is_ok());
        let err = load_plan(&ConfigSource::Text(GOOD.replace("= 8", "= 0")), &registry())
            .err()
            .unwrap();
        assert!(
            err.contains("SFN_WORKER_CONFIG_TOML: worker.max_concurrency: invalid value"),
            "{err}"
        );
    }

    #[test]
    fn field_paths_read_naturally() {
        let p = |v: &[&str]| field_path(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(p(&["activity", "1", "pollers"]), "activity[1].pollers");
        assert_eq!(p(&["worker"]), "worker");
    }
}
