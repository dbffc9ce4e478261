//! Every setting through every door, with the real binary: the config file, its `--flag` and
//! its `PISTATS_*` variable each take effect (`check-config --print` shows the value the
//! daemon would use and where it came from), a flag wins over its variable and both over the
//! file; each number just outside its bounds is refused naming file, line and key; a bad
//! variable or flag value exits 78, like a bad file, while a usage error stays 2.

use std::path::PathBuf;
use std::process::{Command, Output};

use pistats::config::{Setting, SETTINGS};

const BIN: &str = env!("CARGO_BIN_EXE_pistats");

/// For each key: (value in the file as TOML, as shown), (flag text, as shown),
/// (variable text, as shown). Three different values, none the default. `{dir}` is a
/// directory holding copies of one certificate and key as `a.crt`/`a.key`, `b.*`, `c.*`.
const CASES: &[(&str, [(&str, &str); 3])] = &[
    (
        "host",
        [
            ("\"127.0.0.2\"", "127.0.0.2"),
            ("::1", "::1"),
            ("10.0.0.1", "10.0.0.1"),
        ],
    ),
    ("port", [("1001", "1001"), ("1002", "1002"), ("0", "0")]),
    (
        "interval",
        [("\"2s\"", "2s"), ("1500ms", "1500ms"), ("3", "3s")],
    ),
    ("ping_interval", [("5", "5s"), ("6s", "6s"), ("1m", "1m")]),
    (
        "ping_timeout",
        [("\"7s\"", "7s"), ("100ms", "100ms"), ("1h", "1h")],
    ),
    (
        "send_timeout",
        [("2.5", "2500ms"), ("3s", "3s"), ("9s", "9s")],
    ),
    ("top_processes", [("3", "3"), ("0", "0"), ("1000", "1000")]),
    ("history", [("\"1h\"", "1h"), ("0", "0s"), ("2m", "2m")]),
    (
        "state_dir",
        [
            ("\"/var/lib/a\"", "/var/lib/a"),
            ("/srv/b", "/srv/b"),
            ("rel/c", "rel/c"),
        ],
    ),
    (
        "persist_interval",
        [("\"5m\"", "5m"), ("90", "90s"), ("1h", "1h")],
    ),
    (
        "history_raw",
        [("\"30m\"", "30m"), ("7200", "2h"), ("0s", "0s")],
    ),
    (
        "history_minute",
        [("\"2d\"", "2d"), ("3600", "1h"), ("30d", "30d")],
    ),
    (
        "history_quarter",
        [("\"90d\"", "90d"), ("86400", "24h"), ("730d", "730d")],
    ),
    (
        "temperature_warning",
        [("75", "75"), ("82.5", "82.5"), ("100", "100")],
    ),
    (
        "mount_fill_warning",
        [("95.5", "95.5"), ("80", "80"), ("99", "99")],
    ),
    (
        "assets_dir",
        [
            ("\"/srv/a\"", "/srv/a"),
            ("/srv/b", "/srv/b"),
            ("rel/c", "rel/c"),
        ],
    ),
    (
        "log_level",
        [
            ("\"debug\"", "debug"),
            ("trace", "trace"),
            ("error", "error"),
        ],
    ),
    (
        "serve",
        [
            ("\"while-connected\"", "while-connected"),
            ("loopback-while-offline", "loopback-while-offline"),
            ("always", "always"),
        ],
    ),
    (
        "interface",
        [("\"eth0\"", "eth0"), ("wlp2s0", "wlp2s0"), ("end0", "end0")],
    ),
    (
        "token",
        [
            ("\"s3cret\"", "(set, not shown)"),
            ("flag-token", "(set, not shown)"),
            ("env-token", "(set, not shown)"),
        ],
    ),
    (
        "allowed_origins",
        [
            ("[\"http://a.test\"]", "[http://a.test]"),
            (
                "http://b.test, https://c.test:8443",
                "[http://b.test, https://c.test:8443]",
            ),
            ("", "[]"),
        ],
    ),
    (
        "max_clients",
        [("1", "1"), ("65536", "65536"), ("200", "200")],
    ),
    (
        "max_clients_per_ip",
        [("2", "2"), ("3", "3"), ("65536", "65536")],
    ),
    (
        "max_message_size",
        [("125", "125"), ("1048576", "1048576"), ("8192", "8192")],
    ),
    (
        "hide_process_names",
        [("true", "true"), ("false", "false"), ("yes", "true")],
    ),
    (
        "tls_cert",
        [
            ("\"{dir}/a.crt\"", "{dir}/a.crt"),
            ("{dir}/b.crt", "{dir}/b.crt"),
            ("{dir}/c.crt", "{dir}/c.crt"),
        ],
    ),
    (
        "tls_key",
        [
            ("\"{dir}/a.key\"", "{dir}/a.key"),
            ("{dir}/b.key", "{dir}/b.key"),
            ("{dir}/c.key", "{dir}/c.key"),
        ],
    ),
    (
        "proc_root",
        [
            ("\"/tmp/p1\"", "/tmp/p1"),
            ("/tmp/p2", "/tmp/p2"),
            ("/tmp/p3", "/tmp/p3"),
        ],
    ),
    (
        "sys_root",
        [
            ("\"/tmp/s1\"", "/tmp/s1"),
            ("/tmp/s2", "/tmp/s2"),
            ("/tmp/s3", "/tmp/s3"),
        ],
    ),
    (
        "vcgencmd",
        [
            ("\"/opt/vc1\"", "/opt/vc1"),
            ("/opt/vc2", "/opt/vc2"),
            ("/opt/vc3", "/opt/vc3"),
        ],
    ),
];

/// One value per key that its type or bounds refuse, as a flag or variable would give it.
/// Paths refuse only a NUL byte, which no flag or variable can carry: theirs is `""`, which
/// unsets them instead (see `an_empty_flag_or_variable_unsets_a_path`).
const BAD: &[(&str, &str)] = &[
    ("host", "300.1.1.1"),
    ("port", "65536"),
    ("interval", "fast"),
    ("ping_interval", "0"),
    ("ping_timeout", "-1s"),
    ("send_timeout", "1 parsec"),
    ("top_processes", "ten"),
    ("history", "25h"),
    ("state_dir", ""),
    ("persist_interval", "0s"),
    ("history_raw", "2d"),
    ("history_minute", "59s"),
    ("history_quarter", "14m"),
    ("temperature_warning", "hot"),
    ("mount_fill_warning", "101"),
    ("assets_dir", ""),
    ("log_level", "loud"),
    ("serve", "sometimes"),
    ("interface", "wlan 0"),
    ("token", "   "),
    ("allowed_origins", "http://a.test/"),
    ("max_clients", "0"),
    ("max_clients_per_ip", "65537"),
    ("max_message_size", "124"),
    ("hide_process_names", "maybe"),
    ("tls_cert", ""),
    ("tls_key", ""),
    ("proc_root", ""),
    ("sys_root", ""),
    ("vcgencmd", ""),
];

/// Each number's bounds, as (key, lowest accepted, highest accepted, just below, just above),
/// written as TOML values.
const BOUNDS: &[(&str, &str, &str, &str, &str)] = &[
    ("port", "0", "65535", "-1", "65536"),
    (
        "interval",
        "\"250ms\"",
        "\"1h\"",
        "\"249ms\"",
        "\"3600001ms\"",
    ),
    (
        "ping_interval",
        "\"100ms\"",
        "\"1h\"",
        "\"99ms\"",
        "\"3600001ms\"",
    ),
    (
        "ping_timeout",
        "\"100ms\"",
        "\"1h\"",
        "\"99ms\"",
        "\"3600001ms\"",
    ),
    (
        "send_timeout",
        "\"100ms\"",
        "\"1h\"",
        "\"99ms\"",
        "\"3600001ms\"",
    ),
    ("top_processes", "0", "1000", "-1", "1001"),
    ("history", "0", "\"24h\"", "-1", "\"86400001ms\""),
    ("persist_interval", "1", "\"24h\"", "0", "\"86400001ms\""),
    ("history_raw", "0", "\"24h\"", "-1", "\"86400001ms\""),
    ("history_minute", "60", "\"365d\"", "59", "\"366d\""),
    ("history_quarter", "900", "\"3650d\"", "899", "\"3651d\""),
    ("temperature_warning", "20", "150", "19.9", "150.5"),
    ("mount_fill_warning", "1", "100", "0.5", "100.1"),
    ("max_clients", "1", "65536", "0", "65537"),
    ("max_clients_per_ip", "1", "65536", "0", "65537"),
    ("max_message_size", "125", "1048576", "124", "1048577"),
];

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    // Only the variables a test sets.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PISTATS_") {
            command.env_remove(name);
        }
    }
    command.env_remove("RUST_LOG");
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run pistats")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `check-config --print` output as key → (value, origin).
fn printed(out: &Output) -> Vec<(String, String, String)> {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|line| {
            let (key, rest) = line.split_once(" = ").expect("key = value");
            let (value, origin) = rest.rsplit_once("  (").expect("value  (origin)");
            (
                key.trim().to_owned(),
                value.to_owned(),
                origin.trim_end_matches(')').to_owned(),
            )
        })
        .collect()
}

fn lookup<'a>(printed: &'a [(String, String, String)], key: &str) -> (&'a str, &'a str) {
    let (_, value, origin) = printed
        .iter()
        .find(|(k, _, _)| k == key)
        .unwrap_or_else(|| panic!("{key} not printed: {printed:?}"));
    (value, origin)
}

struct Fixture {
    dir: tempfile::TempDir,
    file: PathBuf,
}

impl Fixture {
    fn sub(&self, text: &str) -> String {
        text.replace("{dir}", self.dir.path().to_str().unwrap())
    }

    /// A config file setting every key to its first value, one per line after a comment.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        for name in ["a", "b", "c"] {
            std::fs::write(dir.path().join(format!("{name}.crt")), certified.cert.pem()).unwrap();
            let key = certified.signing_key.serialize_pem();
            std::fs::write(dir.path().join(format!("{name}.key")), key).unwrap();
        }
        let fixture = Fixture {
            file: dir.path().join("config.toml"),
            dir,
        };
        let mut text = String::from("# every setting\n");
        for (key, [(toml, _), _, _]) in CASES {
            text.push_str(&format!("{key} = {}\n", fixture.sub(toml)));
        }
        std::fs::write(&fixture.file, text).unwrap();
        fixture
    }

    fn check(&self) -> Command {
        command(&[
            "--config",
            self.file.to_str().unwrap(),
            "check-config",
            "--print",
        ])
    }
}

#[test]
fn cases_cover_every_setting() {
    let keys: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
    assert_eq!(CASES.iter().map(|c| c.0).collect::<Vec<_>>(), keys);
    assert_eq!(BAD.iter().map(|c| c.0).collect::<Vec<_>>(), keys);
    for setting in SETTINGS {
        let numeric = ["a number", "a duration"]
            .iter()
            .any(|kind| (setting.expected)().starts_with(kind));
        let bounded = BOUNDS.iter().any(|b| b.0 == setting.key);
        assert_eq!(numeric, bounded, "{}: bounds not tested", setting.key);
    }
}

#[test]
fn every_setting_works_from_file_flag_and_variable() {
    let fixture = Fixture::new();

    // The file alone: every key has its file value, attributed to its line.
    let from_file = printed(&run(&mut fixture.check()));
    let file = fixture.file.display().to_string();
    for (line, (key, [(_, shown), _, _])) in CASES.iter().enumerate() {
        let (value, origin) = lookup(&from_file, key);
        assert_eq!(value, fixture.sub(shown), "{key} from the file");
        assert_eq!(origin, format!("{file}, line {}", line + 2), "{key}");
    }

    for setting in SETTINGS {
        let key = setting.key;
        let [_, (flag_text, flag_shown), (env_text, env_shown)] =
            CASES.iter().find(|c| c.0 == key).unwrap().1;
        let (flag_text, env_text) = (fixture.sub(flag_text), fixture.sub(env_text));

        // The variable wins over the file; nothing else changes.
        let out = run(fixture.check().env(setting.env(), &env_text));
        let with_env = printed(&out);
        let (value, origin) = lookup(&with_env, key);
        assert_eq!(
            value,
            fixture.sub(env_shown),
            "{key} from {}",
            setting.env()
        );
        assert_eq!(origin, format!("environment variable {}", setting.env()));
        for (other, _, _) in with_env.iter().filter(|(k, _, _)| k != key) {
            assert_eq!(
                lookup(&with_env, other),
                lookup(&from_file, other),
                "{other}"
            );
        }

        // The flag wins over the variable and the file.
        let flag = format!("{}={flag_text}", setting.flag());
        let out = run(fixture.check().arg(&flag).env(setting.env(), &env_text));
        let with_flag = printed(&out);
        let (value, origin) = lookup(&with_flag, key);
        assert_eq!(value, fixture.sub(flag_shown), "{key} from {flag}");
        assert_eq!(origin, format!("command-line flag {}", setting.flag()));
    }
}

/// Whether `""` unsets the setting rather than being refused.
fn empty_unsets(setting: &Setting) -> bool {
    (setting.expected)().ends_with("or \"\" for none")
}

/// All at once, since `tls_cert` and `tls_key` go together.
#[test]
fn an_empty_flag_or_variable_unsets_a_path() {
    let fixture = Fixture::new();
    let paths: Vec<&Setting> = SETTINGS.iter().filter(|s| empty_unsets(s)).collect();
    assert!(paths.iter().any(|s| s.key == "state_dir"), "state_dir");
    let from_file = printed(&run(&mut fixture.check()));
    let mut by_env = fixture.check();
    let mut by_flag = fixture.check();
    for setting in &paths {
        assert_eq!(BAD.iter().find(|b| b.0 == setting.key).unwrap().1, "");
        assert_ne!(lookup(&from_file, setting.key).0, "none", "{}", setting.key);
        by_env.env(setting.env(), "");
        by_flag.arg(format!("{}=", setting.flag()));
    }
    let (with_env, with_flag) = (printed(&run(&mut by_env)), printed(&run(&mut by_flag)));
    for setting in paths {
        let (value, origin) = lookup(&with_env, setting.key);
        assert_eq!(value, "none", "{}=", setting.env());
        assert_eq!(origin, format!("environment variable {}", setting.env()));
        let (value, origin) = lookup(&with_flag, setting.key);
        assert_eq!(value, "none", "{}=", setting.flag());
        assert_eq!(origin, format!("command-line flag {}", setting.flag()));
    }
}

#[test]
fn bad_variable_or_flag_value_exits_78_naming_it() {
    for (key, bad) in BAD {
        let setting = SETTINGS.iter().find(|s| s.key == *key).unwrap();
        if empty_unsets(setting) {
            continue;
        }
        let requirement = format!("{key} must be {}", (setting.expected)());

        let out = run(command(&["--config", "/dev/null", "check-config"]).env(setting.env(), bad));
        assert_eq!(
            out.status.code(),
            Some(78),
            "{key}={bad:?}: {}",
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "environment variable {}: {requirement}",
                setting.env()
            )),
            "{err}"
        );
        // A secret is never echoed back.
        if *key == "token" {
            assert!(!err.contains(&format!("{bad:?}")), "{err}");
        }

        // As a flag, to the daemon itself (not only check-config).
        let flag = format!("{}={bad}", setting.flag());
        let out = run(&mut command(&["--config", "/dev/null", &flag, "snapshot"]));
        assert_eq!(out.status.code(), Some(78), "{flag}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "command-line flag {}: {requirement}",
                setting.flag()
            )),
            "{}",
            stderr(&out)
        );
    }
    // Bytes that are not UTF-8 are refused too, not mangled into another path.
    use std::os::unix::ffi::OsStrExt;
    let not_utf8 = std::ffi::OsStr::from_bytes(b"/tmp/\xff");
    let out =
        run(command(&["--config", "/dev/null", "check-config"]).env("PISTATS_PROC_ROOT", not_utf8));
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("environment variable PISTATS_PROC_ROOT: proc_root must be"));

    // Usage errors are not configuration errors.
    let out = run(&mut command(&["--no-such-flag", "check-config"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn each_number_just_out_of_bounds_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bounds.toml");
    let check = |text: String| {
        std::fs::write(&path, text).unwrap();
        run(&mut command(&["check-config", path.to_str().unwrap()]))
    };
    for (key, low, high, below, above) in BOUNDS {
        for ok in [low, high] {
            let out = check(format!("# bounds\n\n{key} = {ok}\n"));
            assert_eq!(out.status.code(), Some(0), "{key} = {ok}: {}", stderr(&out));
        }
        let setting = SETTINGS.iter().find(|s| s.key == *key).unwrap();
        for bad in [below, above] {
            let out = check(format!("# bounds\n\n{key} = {bad}\n"));
            assert_eq!(out.status.code(), Some(78), "{key} = {bad}");
            let err = stderr(&out);
            let expected = format!(
                "{}, line 3: {key} must be {}, not {bad}",
                path.display(),
                (setting.expected)()
            );
            assert!(
                err.contains(&expected),
                "{key} = {bad}:\n{err}\nwanted: {expected}"
            );
        }
    }
}

#[test]
fn messages_speak_the_users_terms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    for (text, expected) in [
        (
            "port = \"abc\"",
            "port must be a number from 0 to 65535, not \"abc\"",
        ),
        (
            "interval = \"100ms\"",
            "interval must be a duration from 250ms to 1h",
        ),
        (
            "serve = \"sometimes\"",
            "serve must be one of \"always\", \"while-connected\", \"loopback-while-offline\"",
        ),
        (
            "hide_process_names = 1",
            "hide_process_names must be true or false, not 1",
        ),
        (
            "interface = \"wlan 0\"",
            "interface must be a network interface name",
        ),
        (
            "token = \" \"",
            "token must be 1 to 1024 visible ASCII characters",
        ),
        ("tls_key = \"/k\"", "tls_key is set but tls_cert is not"),
        (
            "history = \"24h\"\ninterval = \"250ms\"",
            "keeps 345600 points",
        ),
        ("prot = 1", "unknown setting `prot` (did you mean `port`?)"),
    ] {
        std::fs::write(&path, text).unwrap();
        let out = run(&mut command(&["check-config", path.to_str().unwrap()]));
        assert_eq!(out.status.code(), Some(78), "{text}");
        let err = stderr(&out);
        assert!(err.contains(expected), "{text}: {err}");
        assert!(
            err.contains(&path.display().to_string()) && err.contains("line 1"),
            "{err}"
        );
        assert!(!err.contains("invalid type"), "{err}");
    }
}

/// The file, the flag and the variable are parsed by the same code: a value accepted in one
/// is accepted in the others (a text value in TOML is a string).
#[test]
fn flag_values_parse_like_file_values() {
    let fixture = Fixture::new();
    let from_file = printed(&run(&mut fixture.check()));
    let mut flags = vec![
        "--config".to_owned(),
        "/dev/null".to_owned(),
        "check-config".to_owned(),
        "--print".to_owned(),
    ];
    for (key, [(_, shown), _, _]) in CASES {
        let (value, _) = lookup(&from_file, key);
        assert_eq!(value, fixture.sub(shown));
        let setting = SETTINGS.iter().find(|s| s.key == *key).unwrap();
        // The printed form is accepted back as a flag value (lists without brackets).
        let text = value.trim_start_matches('[').trim_end_matches(']');
        if *key != "token" {
            flags.push(format!("{}={text}", setting.flag()));
        }
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let from_flags = printed(&run(&mut command(&flags)));
    for (key, value, _) in &from_file {
        if key != "token" {
            assert_eq!(lookup(&from_flags, key).0, value, "{key}");
        }
    }
}
