//! Loader tests: one per validation rule, asserting the exact `FILE:LINE: FIELD: PROBLEM`.
use super::*;
use proptest::prelude::*;

/// A valid whatsapp profile; line numbers matter for the assertions below.
const WA: &str = r#"kind = "whatsapp"
name = "wa"
[sip]
listen = "127.0.0.1:5061"
public_host = "gw.example.test"
[tls]
mode = "sandbox"
[meta]
connect = "127.0.0.1:5062"
sandbox = true
allowed_sources = ["meta", "127.0.0.0/8"]
[graph]
base_url = "http://127.0.0.1:8081"
token = { literal = "sandbox" }
[media]
rtp_port_range = [40000, 40999]
[[numbers]]
e164 = "+15550001111"
phone_number_id = "106540352242922"
sip_password = { file = "var/none.sip" }
trunk = "pbx"
"#;

/// A valid trunk profile.
const PBX: &str = r#"kind = "trunk"
name = "pbx"
allowed_sources = ["127.0.0.1"]
default_number = "+15550001111"
[peer]
address = "127.0.0.1:5060"
transport = "udp"
[media]
rtp_port_range = [30000, 30999]
"#;

/// Load a folder made of `files` and return every message with the folder path as `DIR`.
fn load(files: &[(&str, &str)]) -> Result<Config, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let prefix = format!("{}", dir.path().display());
    load_dir(dir.path()).map_err(|errs| {
        errs.iter()
            .map(|e| e.to_string().replace(&prefix, "DIR"))
            .collect()
    })
}

fn errors(files: &[(&str, &str)]) -> Vec<String> {
    match load(files) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e,
    }
}

/// Errors when `wa.toml` has `from` replaced by `to` (and pbx.toml is the valid trunk).
fn wa_with(from: &str, to: &str) -> Vec<String> {
    assert!(WA.contains(from), "{from}");
    errors(&[("wa.toml", &WA.replace(from, to)), ("pbx.toml", PBX)])
}

fn pbx_with(from: &str, to: &str) -> Vec<String> {
    assert!(PBX.contains(from), "{from}");
    errors(&[("wa.toml", WA), ("pbx.toml", &PBX.replace(from, to))])
}

#[test]
fn valid_folder_loads_with_defaults() {
    let cfg = load(&[("wa.toml", WA), ("pbx.toml", PBX)]).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let wa = &cfg.whatsapp[0];
    assert_eq!(wa.sip.public_port, 5061);
    assert_eq!(wa.meta.edge_host, "wa.meta.vc");
    assert_eq!(wa.meta.connect.to_string(), "127.0.0.1:5062");
    assert_eq!(wa.tls, TlsIdentity::SandboxIssued);
    assert!(wa.inbound_auth.challenge);
    assert_eq!(wa.inbound_auth.realm, "gw.example.test");
    assert_eq!(wa.graph.versioned_base(), "http://127.0.0.1:8081/v23.0");
    assert!(
        wa.meta
            .allowed_sources
            .contains("157.240.1.1".parse().unwrap())
    );
    assert!(
        wa.meta
            .allowed_sources
            .contains("127.0.0.1".parse().unwrap())
    );
    assert!(!wa.meta.allowed_sources.contains("8.8.8.8".parse().unwrap()));
    let n = &wa.numbers[0];
    assert_eq!(n.srtp_key_exchange, KeyExchange::Dtls);
    assert_eq!(n.digest_username(), "15550001111");
    assert_eq!(n.trunk_request_user(), "+15550001111");
    assert_eq!(n.masked(), "+*******1111");
    let t = cfg.trunk("pbx").unwrap();
    assert_eq!(t.listen.udp, vec!["127.0.0.1:5080".parse().unwrap()]);
    assert_eq!(t.listen.tcp, vec!["127.0.0.1:5080".parse().unwrap()]);
    assert_eq!(t.options_ping_s, Some(30));
    assert_eq!(t.session_timer.session_expires_s, 1800);
    assert_eq!(cfg.gateway, GatewayConfig::default());
    assert_eq!(
        cfg.number("15550001111").unwrap().1.phone_number_id,
        "106540352242922"
    );
    assert!(cfg.number_by_phone_number_id("106540352242922").is_some());
}

#[test]
fn bad_socket_address() {
    assert_eq!(
        pbx_with("127.0.0.1:5060", "127.0.0.1:99999"),
        vec![r#"DIR/pbx.toml:6: peer.address: "127.0.0.1:99999" is not a socket address"#]
    );
    assert_eq!(
        wa_with("listen = \"127.0.0.1:5061\"", "listen = \"localhost\""),
        vec![r#"DIR/wa.toml:4: sip.listen: "localhost" is not a socket address"#]
    );
}

#[test]
fn unknown_key_is_rejected_with_line_and_path() {
    let e = pbx_with("transport = \"udp\"", "transport = \"udp\"\nproto = 1");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("DIR/pbx.toml:8: peer.proto: unknown field `proto`, expected one of"),
        "{e:?}"
    );
    let e = wa_with("trunk = \"pbx\"", "trunk = \"pbx\"\ncolour = \"red\"");
    assert!(
        e[0].starts_with("DIR/wa.toml:22: numbers[0].colour: unknown field `colour`"),
        "{e:?}"
    );
}

#[test]
fn wrong_type_and_unknown_variant() {
    assert_eq!(
        pbx_with("transport = \"udp\"", "transport = \"sctp\""),
        vec![
            "DIR/pbx.toml:7: peer.transport: unknown variant `sctp`, expected one of `udp`, `tcp`, `tls`"
        ]
    );
    let e = wa_with("sandbox = true", "sandbox = \"yes\"");
    assert!(
        e[0].starts_with("DIR/wa.toml:10: meta.sandbox: invalid type"),
        "{e:?}"
    );
}

#[test]
fn missing_required_field() {
    assert_eq!(
        wa_with("phone_number_id = \"106540352242922\"\n", ""),
        vec!["DIR/wa.toml:17: numbers[0].phone_number_id: missing (required)"]
    );
}

#[test]
fn syntax_error_names_line() {
    assert_eq!(
        pbx_with("name = \"pbx\"", "name = \"pbx"),
        vec!["DIR/pbx.toml:2: TOML syntax: invalid basic string, expected `\"`"]
    );
}

#[test]
fn port_range_rules() {
    assert_eq!(
        pbx_with("[30000, 30999]", "[30001, 30999]"),
        vec![
            "DIR/pbx.toml:9: media.rtp_port_range: [30001, 30999]: RTP ranges start on an even port (RTP even, RTCP odd)"
        ]
    );
    assert_eq!(
        pbx_with("[30000, 30999]", "[31000, 30000]"),
        vec![
            "DIR/pbx.toml:9: media.rtp_port_range: [31000, 30000] is not a port range (start must be below end)"
        ]
    );
    assert_eq!(
        pbx_with("[30000, 30999]", "[40500, 41000]"),
        vec![
            r#"DIR/wa.toml:16: media.rtp_port_range: [40000, 40999] overlaps [40500, 41000] of profile "pbx" (DIR/pbx.toml:9)"#
        ]
    );
}

#[test]
fn e164_and_phone_number_id() {
    assert_eq!(
        wa_with("e164 = \"+15550001111\"", "e164 = \"15550001111\""),
        vec![
            r#"DIR/wa.toml:18: numbers[0].e164: "15550001111" is not an E.164 number ("+" then 8 to 15 digits)"#,
            r#"DIR/pbx.toml:4: default_number: "+15550001111" is not a business number of any whatsapp profile"#
        ]
    );
    assert_eq!(
        wa_with("\"106540352242922\"", "\"10654x\""),
        vec![
            r#"DIR/wa.toml:19: numbers[0].phone_number_id: "10654x" is not a phone_number_id (digits only)"#
        ]
    );
    for ok in ["+12345678", "+123456789012345"] {
        assert!(is_e164(ok), "{ok}");
    }
    for bad in [
        "+1234567",
        "+1234567890123456",
        "+1555 000",
        "++15550001111",
        "+05550001111",
    ] {
        assert!(!is_e164(bad), "{bad}");
    }
}

#[test]
fn duplicate_profile_names() {
    let e = errors(&[
        ("a.toml", WA),
        ("pbx.toml", PBX),
        (
            "pbx2.toml",
            &format!(
                "{}[listen]\nudp = [\"127.0.0.1:5082\"]\n",
                PBX.replace("[30000, 30999]", "[32000, 32999]")
            ),
        ),
    ]);
    assert_eq!(
        e,
        vec![r#"DIR/pbx2.toml:2: name: "pbx" is already used by DIR/pbx.toml:2"#]
    );
}

#[test]
fn duplicate_numbers_across_profiles() {
    let wa2 = WA
        .replace("name = \"wa\"", "name = \"wa2\"")
        .replace("[40000, 40999]", "[42000, 42999]")
        .replace("127.0.0.1:5061", "127.0.0.1:5063");
    let e = errors(&[("a.toml", WA), ("b.toml", &wa2), ("pbx.toml", PBX)]);
    assert_eq!(
        e,
        vec![
            r#"DIR/b.toml:18: numbers[0].e164: "+15550001111" is already served at DIR/a.toml:18"#,
            r#"DIR/b.toml:19: numbers[0].phone_number_id: "106540352242922" is already used at DIR/a.toml:19"#,
        ]
    );
}

#[test]
fn number_trunk_must_exist() {
    assert_eq!(
        wa_with("trunk = \"pbx\"", "trunk = \"asterisk\""),
        vec![
            r#"DIR/wa.toml:21: numbers[0].trunk: "asterisk" names no trunk profile (known trunks: pbx)"#
        ]
    );
}

#[test]
fn broken_trunk_file_does_not_cascade() {
    let e = pbx_with("transport = \"udp\"", "transport = 5");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("DIR/pbx.toml:7: peer.transport:"), "{e:?}");
}

#[test]
fn at_least_one_whatsapp_profile() {
    assert_eq!(
        errors(&[(
            "pbx.toml",
            &PBX.replace("default_number = \"+15550001111\"\n", "")
        )]),
        vec![r#"DIR: no whatsapp profile: at least one file with kind = "whatsapp" is required"#]
    );
    assert_eq!(
        errors(&[]),
        vec![r#"DIR: no whatsapp profile: at least one file with kind = "whatsapp" is required"#]
    );
}

#[test]
fn cidrs_parse() {
    assert_eq!(
        wa_with("\"127.0.0.0/8\"", "\"127.0.0.1/8\", \"10.0.0.0/33\""),
        vec![
            r#"DIR/wa.toml:11: meta.allowed_sources[1]: "127.0.0.1/8" has host bits set (did you mean "127.0.0.0/8"?)"#,
            r#"DIR/wa.toml:11: meta.allowed_sources[2]: "10.0.0.0/33" is not an IP address or CIDR"#,
        ]
    );
}

#[test]
fn all_problems_are_collected() {
    let wa = WA
        .replace("\"+15550001111\"", "\"+1\"")
        .replace("\"106540352242922\"", "\"x\"")
        .replace("trunk = \"pbx\"", "trunk = \"none\"");
    let e = errors(&[
        ("wa.toml", &wa),
        ("pbx.toml", &PBX.replace("127.0.0.1:5060", "nope")),
    ]);
    assert_eq!(e.len(), 5, "{e:#?}");
}

#[test]
fn kind_is_required_and_known() {
    assert_eq!(
        errors(&[
            ("wa.toml", WA),
            ("pbx.toml", PBX),
            ("x.toml", "name = \"x\"\n")
        ]),
        vec![r#"DIR/x.toml:1: kind: missing: expected "whatsapp", "trunk" or "gateway""#]
    );
    assert_eq!(
        errors(&[
            ("wa.toml", WA),
            ("pbx.toml", PBX),
            ("x.toml", "\nkind = \"pbx\"\n")
        ]),
        vec![r#"DIR/x.toml:2: kind: "pbx" is not one of "whatsapp", "trunk" or "gateway""#]
    );
}

#[test]
fn tls_files_must_exist_and_be_pem_unless_sandbox_issued() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("junk.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let wa = WA.replace(
        "mode = \"sandbox\"",
        &format!(
            "cert_chain = {:?}\nprivate_key = \"/nonexistent/key.pem\"",
            not_pem.display().to_string()
        ),
    );
    let e = errors(&[("wa.toml", &wa), ("pbx.toml", PBX)]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(
        e[0],
        format!(
            "DIR/wa.toml:7: tls.cert_chain: {} holds no PEM certificate",
            not_pem.display()
        )
    );
    assert!(
        e[1].starts_with("DIR/wa.toml:8: tls.private_key: cannot read /nonexistent/key.pem:"),
        "{e:?}"
    );

    // a real certificate and key pass
    let ck = rcgen::generate_simple_self_signed(vec!["gw.example.test".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let wa = WA.replace(
        "mode = \"sandbox\"",
        &format!(
            "cert_chain = {:?}\nprivate_key = {:?}",
            cert.display().to_string(),
            key.display().to_string()
        ),
    );
    let cfg = load(&[("wa.toml", &wa), ("pbx.toml", PBX)]).unwrap();
    assert!(matches!(cfg.whatsapp[0].tls, TlsIdentity::Files { .. }));

    // sandbox-issued needs the sandbox
    let e = wa_with("sandbox = true", "sandbox = false");
    assert_eq!(
        e.iter()
            .filter(|m| !m.starts_with("warning: "))
            .collect::<Vec<_>>(),
        vec![
            r#"DIR/wa.toml:7: tls.mode: "sandbox" needs meta.sandbox = true (only the sandbox trusts its CA)"#
        ]
    );
}

#[test]
fn secrets_warn_outside_sandbox_only() {
    // sandbox: nothing to say about an absent password file or a literal token
    let cfg = load(&[("wa.toml", WA), ("pbx.toml", PBX)]).unwrap();
    assert!(cfg.warnings.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["gw.example.test".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let wa = WA
        .replace("sandbox = true", "sandbox = false")
        .replace(
            "mode = \"sandbox\"",
            &format!(
                "cert_chain = {:?}\nprivate_key = {:?}",
                cert.display().to_string(),
                key.display().to_string()
            ),
        )
        .replace(
            "base_url = \"http://127.0.0.1:8081\"",
            "base_url = \"https://graph.facebook.com\"",
        );
    let cfg = load(&[("wa.toml", &wa), ("pbx.toml", PBX)]).unwrap();
    let prefix = format!("{}", cfg.dir.display());
    let warnings: Vec<String> = cfg
        .warnings
        .iter()
        .map(|w| w.to_string().replace(&prefix, "DIR"))
        .collect();
    assert_eq!(
        warnings,
        vec![
            "warning: DIR/wa.toml:15: graph.token: literal secret in a profile file; prefer { env = ... } or { file = ... } outside sandbox mode",
            "warning: DIR/wa.toml:21: numbers[0].sip_password: cannot read var/none.sip: No such file or directory (os error 2)",
        ]
    );
    assert!(cfg.warnings.iter().all(|w| w.severity == Severity::Warning));
}

#[test]
fn secret_needs_exactly_one_source() {
    assert_eq!(
        wa_with(
            "{ file = \"var/none.sip\" }",
            "{ file = \"a\", env = \"B\" }"
        ),
        vec![
            r#"DIR/wa.toml:20: numbers[0].sip_password: give exactly one of { env = "VAR" }, { file = "path" } or { literal = "..." }"#
        ]
    );
}

#[test]
fn calling_block_type_checks() {
    let wa = format!(
        "{WA}[numbers.calling]\nstatus = \"ENABLED\"\n[numbers.calling.call_hours]\nstatus = \"ENABLED\"\ntimezone_id = \"America/Manaus\"\nweekly_operating_hours = [{{ day_of_week = \"MONDAY\", open_time = \"0900\", close_time = \"2560\" }}]\nholiday_schedule = [{{ date = \"2026-02-30\", start_time = \"0000\", end_time = \"2359\" }}]\n"
    );
    assert_eq!(
        errors(&[("wa.toml", &wa), ("pbx.toml", PBX)]),
        vec![
            r#"DIR/wa.toml:27: numbers[0].calling.call_hours.weekly_operating_hours[0].close_time: "2560" is not a time (HHMM)"#,
            r#"DIR/wa.toml:28: numbers[0].calling.call_hours.holiday_schedule[0].date: "2026-02-30" is not a date (YYYY-MM-DD)"#,
        ]
    );
    let wa = format!("{WA}[numbers.calling]\ncall_icon_visibility = \"SHOUT\"\n");
    let e = errors(&[("wa.toml", &wa), ("pbx.toml", PBX)]);
    assert!(
        e[0].starts_with(
            "DIR/wa.toml:23: numbers[0].calling.call_icon_visibility: unknown variant `SHOUT`"
        ),
        "{e:?}"
    );
    let ok = format!(
        "{WA}[numbers.calling]\nstatus = \"ENABLED\"\ncall_icon_visibility = \"DEFAULT\"\ncallback_permission_status = \"ENABLED\"\n[numbers.calling.call_hours]\nstatus = \"ENABLED\"\ntimezone_id = \"America/Manaus\"\nweekly_operating_hours = [{{ day_of_week = \"MONDAY\", open_time = \"0900\", close_time = \"17:00\" }}]\n"
    );
    let cfg = load(&[("wa.toml", &ok), ("pbx.toml", PBX)]).unwrap();
    let hours = cfg.whatsapp[0].numbers[0]
        .calling
        .as_ref()
        .unwrap()
        .call_hours
        .as_ref()
        .unwrap();
    assert_eq!(
        hours.weekly_operating_hours[0].close_time.to_string(),
        "1700"
    );
    assert_eq!(hours.weekly_operating_hours[0].day_of_week, Weekday::Monday);
}

#[test]
fn request_uri_user_forms() {
    let cfg = load(&[
        (
            "wa.toml",
            &WA.replace("trunk = \"pbx\"", "trunk = \"pbx\"\nrequest_uri_user = { extension = \"100\" }\nrequest_uri_user_params = { tgrp = \"wacall\" }"),
        ),
        ("pbx.toml", PBX),
    ])
    .unwrap();
    let n = &cfg.whatsapp[0].numbers[0];
    assert_eq!(n.trunk_request_user(), "100");
    assert_eq!(n.request_uri_user_params.get("tgrp").unwrap(), "wacall");
    assert_eq!(
        wa_with(
            "trunk = \"pbx\"",
            "trunk = \"pbx\"\nrequest_uri_user = \"e.164\""
        ),
        vec![
            r#"DIR/wa.toml:22: numbers[0].request_uri_user: "e.164" is not one of "e164", "e164_no_plus" or { extension = "..." }"#
        ]
    );
}

#[test]
fn trunk_rules() {
    assert_eq!(
        errors(&[
            ("wa.toml", WA),
            (
                "pbx.toml",
                &format!("{PBX}[session_timer]\nmin_se_s = 30\n")
            )
        ]),
        vec![
            "DIR/pbx.toml:11: session_timer.min_se_s: 30 is out of range 90..=86400 (RFC 4028 minimum is 90)"
        ]
    );
    assert_eq!(
        errors(&[
            ("wa.toml", WA),
            (
                "pbx.toml",
                &PBX.replace("allowed_sources = [\"127.0.0.1\"]\n", "")
                    .replace("127.0.0.1:5060", "pbx.example.test:5060")
            ),
        ]),
        vec![
            "DIR/pbx.toml:5: allowed_sources: missing: the peer is a host name, so list the addresses it sends from"
        ]
    );
    assert_eq!(
        pbx_with(
            "transport = \"udp\"",
            "transport = \"udp\"\n[inbound_auth]\nrealm = \"x\""
        ),
        vec!["DIR/pbx.toml:8: inbound_auth: challenge = true needs username and password"]
    );
    assert_eq!(
        pbx_with(
            "default_number = \"+15550001111\"",
            "default_number = \"+15550009999\""
        ),
        vec![
            r#"DIR/pbx.toml:4: default_number: "+15550009999" is not a business number of any whatsapp profile"#
        ]
    );
}

#[test]
fn default_number_falls_back_to_routed_number() {
    let cfg = load(&[
        ("wa.toml", WA),
        (
            "pbx.toml",
            &PBX.replace("default_number = \"+15550001111\"\n", ""),
        ),
    ])
    .unwrap();
    assert_eq!(
        cfg.trunks[0].default_number.as_deref(),
        Some("+15550001111")
    );
}

#[test]
fn gateway_profile() {
    let gw = "kind = \"gateway\"\nname = \"gateway\"\nhttp_listen = \"127.0.0.1:9090\"\n[sip_timers]\nt1_ms = 250\n";
    let cfg = load(&[("wa.toml", WA), ("pbx.toml", PBX), ("gw.toml", gw)]).unwrap();
    assert_eq!(cfg.gateway.http_listen.port(), 9090);
    assert_eq!(cfg.gateway.sip_timers.t1.as_millis(), 250);
    assert_eq!(cfg.gateway.sip_timers.t2.as_millis(), 4000);
    let e = errors(&[
        ("wa.toml", WA),
        ("pbx.toml", PBX),
        ("gw.toml", gw),
        (
            "gw2.toml",
            &gw.replace("name = \"gateway\"", "name = \"gw2\"")
                .replace("9090", "9091"),
        ),
    ]);
    assert_eq!(
        e,
        vec!["DIR/gw2.toml:2: kind: only one gateway profile is allowed per folder"]
    );
    assert_eq!(
        errors(&[
            ("wa.toml", WA),
            ("pbx.toml", PBX),
            (
                "gw.toml",
                &gw.replace("t1_ms = 250", "t1_ms = 250\nt2_ms = 100")
            )
        ]),
        vec!["DIR/gw.toml:6: sip_timers.t2_ms: 100 ms is below t1_ms (250 ms)"]
    );
}

#[test]
fn non_utf8_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wa.toml"), WA).unwrap();
    std::fs::write(dir.path().join("pbx.toml"), PBX).unwrap();
    std::fs::write(dir.path().join("bad.toml"), b"kind = \"trunk\"\n\xff\xfe").unwrap();
    let e = load_dir(dir.path()).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, Some(2));
    assert_eq!(e[0].problem, "not valid UTF-8");
}

#[test]
fn shipped_profiles_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in [
        "sip-profiles",
        "examples/profiles/asterisk",
        "examples/profiles/freeswitch",
    ] {
        let cfg = load_dir(&root.join(dir)).unwrap_or_else(|e| panic!("{dir}: {e:#?}"));
        assert_eq!(cfg.whatsapp.len(), 1, "{dir}");
    }
    let cfg = load_dir(&root.join("sip-profiles")).unwrap();
    let wa = &cfg.whatsapp[0];
    assert!(wa.meta.sandbox);
    assert_eq!(wa.numbers[0].e164, "+15550001111");
    assert_eq!(wa.numbers[0].phone_number_id, "106540352242922");
    assert_eq!(wa.graph.versioned_base(), "http://127.0.0.1:8081/v23.0");
    assert_eq!(wa.sip.listen.to_string(), "127.0.0.1:5061");
    assert_eq!(wa.meta.connect.to_string(), "127.0.0.1:5062");
    let pbx = cfg.trunk("pbx").unwrap();
    assert_eq!(pbx.peer.address.to_string(), "127.0.0.1:5060");
    assert!(pbx.inbound_auth.is_none());
    assert!(pbx.allowed_sources.contains("127.0.0.1".parse().unwrap()));
    assert_eq!(cfg.gateway.http_listen.to_string(), "127.0.0.1:8080");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.toml"), &bytes).unwrap();
        let _ = load_dir(dir.path());
        if let Ok(s) = std::str::from_utf8(&bytes) {
            let _ = check_text(Path::new("x.toml"), s);
        }
    }

    #[test]
    fn mutated_valid_profiles_never_panic(
        which in 0usize..2, pos in 0usize..400, insert in "[a-z0-9=\\[\\]\"{}.:+, \n_-]{0,12}"
    ) {
        let base = if which == 0 { WA } else { PBX };
        let mut s = base.to_owned();
        let at = (0..=pos.min(s.len())).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        s.insert_str(at, &insert);
        let _ = check_text(Path::new("x.toml"), &s);
        let _ = load(&[("wa.toml", if which == 0 { &s } else { WA }), ("pbx.toml", if which == 1 { &s } else { PBX })]);
    }
}

#[test]
fn port_range_needs_two_ports_and_bad_range_does_not_cascade_into_overlap() {
    // the rejected range's default [30000, 30999] must not be reported as overlapping pbx
    let t2 = "kind = \"trunk\"\nname = \"t2\"\n[media]\nrtp_port_range = [1, 2, 3]\n[listen]\nudp = [\"127.0.0.1:5082\"]\n";
    assert_eq!(
        errors(&[("wa.toml", WA), ("pbx.toml", PBX), ("t2.toml", t2)]),
        vec![
            "DIR/t2.toml:4: media.rtp_port_range: [1, 2, 3] is not a port range (write [first, last], two ports)"
        ]
    );
}

#[test]
fn type_errors_do_not_name_internal_structs() {
    assert_eq!(
        wa_with("{ file = \"var/none.sip\" }", "\"plain\""),
        vec![
            r#"DIR/wa.toml:20: numbers[0].sip_password: invalid type: string "plain", expected a table"#
        ]
    );
}

#[test]
fn sandbox_mode_warns_when_pointing_elsewhere() {
    let wa = WA
        .replace("connect = \"127.0.0.1:5062\"\n", "")
        .replace("http://127.0.0.1:8081", "https://graph.facebook.com");
    let cfg = load(&[("wa.toml", &wa), ("pbx.toml", PBX)]).unwrap();
    let w: Vec<String> = cfg
        .warnings
        .iter()
        .map(|w| format!("{}:{}: {}", w.line.unwrap_or(0), w.field, w.problem))
        .collect();
    assert_eq!(
        w,
        vec![
            "9:meta.connect: meta.sandbox = true but calls go to wa.meta.vc:5061, not the sandbox edge 127.0.0.1:5062",
            "12:graph.base_url: meta.sandbox = true but Graph requests go to https://graph.facebook.com, not the sandbox http://127.0.0.1:8081",
        ]
    );
}

#[test]
fn listening_sockets_are_distinct() {
    let t2 = "kind = \"trunk\"\nname = \"t2\"\n[listen]\nudp = [\"127.0.0.1:5090\"]\ntcp = [\"127.0.0.1:5061\"]\n[media]\nrtp_port_range = [32000, 32999]\n";
    let t3 = "kind = \"trunk\"\nname = \"t3\"\n[listen]\ntcp = [\"127.0.0.1:8080\"]\nudp = [\"127.0.0.1:5080\"]\n[media]\nrtp_port_range = [34000, 34999]\n";
    assert_eq!(
        errors(&[
            ("wa.toml", WA),
            ("pbx.toml", PBX),
            ("t2.toml", t2),
            ("t3.toml", t3)
        ]),
        vec![
            r#"DIR/t3.toml:5: listen.udp[0]: 127.0.0.1:5080 (UDP) is also listen.udp[0] of "pbx" (DIR/pbx.toml:2)"#,
            r#"DIR/t3.toml:4: listen.tcp[0]: 127.0.0.1:8080 (TCP) is also http_listen of "(default HTTP API)" (the default)"#,
            r#"DIR/wa.toml:4: sip.listen: 127.0.0.1:5061 (TCP) is also listen.tcp[0] of "t2" (DIR/t2.toml:5)"#,
        ]
    );
}

#[test]
fn sandbox_digest_algorithm_is_md5_or_sha256() {
    let md5 = WA.replace(
        "sandbox = true",
        "sandbox = true\nsandbox_digest_algorithm = \"md5\"",
    );
    let cfg = load(&[("wa.toml", &md5), ("pbx.toml", PBX)]).unwrap();
    assert!(cfg.whatsapp[0].meta.sandbox_digest_md5);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let sha = WA.replace(
        "sandbox = true",
        "sandbox = true\nsandbox_digest_algorithm = \"SHA-256\"",
    );
    let cfg = load(&[("wa.toml", &sha), ("pbx.toml", PBX)]).unwrap();
    assert!(!cfg.whatsapp[0].meta.sandbox_digest_md5);
    assert_eq!(
        wa_with(
            "sandbox = true",
            "sandbox = true\nsandbox_digest_algorithm = \"sha1\""
        ),
        vec![
            r#"DIR/wa.toml:11: meta.sandbox_digest_algorithm: "sha1": expected "sha-256" or "md5""#
        ]
    );
}
