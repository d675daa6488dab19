//! `whatsip check` / `whatsip run` against real profile folders, through the real binary.
use std::path::Path;
use std::process::{Command, Output};

fn whatsip(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_whatsip"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run whatsip")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn shipped_profiles_pass() {
    let out = whatsip(&["check"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "1 whatsapp profile(s) [whatsapp], 1 number(s) [+*******1111], 1 trunk(s) [pbx]"
        ),
        "{stdout}"
    );
    // no full phone number in the output
    assert!(!stdout.contains("15550001111"), "{stdout}");
}

#[test]
fn example_profiles_pass() {
    for dir in ["examples/profiles/asterisk", "examples/profiles/freeswitch"] {
        let out = whatsip(&["check", "--profiles", dir]);
        assert_eq!(out.status.code(), Some(0), "{dir}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("OK"), "{dir}");
    }
}

const PBX_BROKEN: &str = r#"kind = "trunk"
name = "pbx"
allowed_sources = ["127.0.0.1"]
[peer]
address = "127.0.0.1:99999"
"#;

fn broken_folder() -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let wa = std::fs::read_to_string(root.join("sip-profiles/whatsapp.toml")).unwrap();
    let wa = wa.replace("e164 = \"+15550001111\"", "e164 = \"+1555\"");
    std::fs::write(dir.path().join("whatsapp.toml"), wa).unwrap();
    std::fs::write(dir.path().join("pbx.toml"), PBX_BROKEN).unwrap();
    std::fs::write(
        dir.path().join("extra.toml"),
        "kind = \"trunk\"\nname = \"x\"\nlisten_udp = 1\n",
    )
    .unwrap();
    dir
}

#[test]
fn broken_profiles_fail_with_file_line_field() {
    let dir = broken_folder();
    let d = dir.path().display().to_string();
    let out = whatsip(&["check", "--profiles", &d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    let wa_line = std::fs::read_to_string(dir.path().join("whatsapp.toml"))
        .unwrap()
        .lines()
        .position(|l| l.starts_with("e164 = "))
        .unwrap()
        + 1;
    for want in [
        format!("{d}/pbx.toml:5: peer.address: \"127.0.0.1:99999\" is not a socket address"),
        format!("{d}/whatsapp.toml:{wa_line}: numbers[0].e164: \"+1555\" is not an E.164 number"),
        format!("{d}/extra.toml:3: listen_udp: unknown field `listen_udp`"),
    ] {
        assert!(
            err.lines().any(|l| l.starts_with(&want)),
            "missing {want:?} in:\n{err}"
        );
    }
}

#[test]
fn run_refuses_broken_profiles_with_the_same_messages() {
    let dir = broken_folder();
    let d = dir.path().display().to_string();
    let check = whatsip(&["check", "--profiles", &d]);
    let run = whatsip(&["run", "--profiles", &d]);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(text(&run.stderr), text(&check.stderr));
}

#[test]
fn missing_folder_is_an_error() {
    let out = whatsip(&["check", "--profiles", "/nonexistent/whatsip-profiles"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("/nonexistent/whatsip-profiles: cannot read profile folder:"),
        "{}",
        text(&out.stderr)
    );
}
