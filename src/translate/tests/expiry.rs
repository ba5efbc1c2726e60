//! Certificates close to expiry: still served, reported as a Warning 14 days ahead, and their
//! expiry kept in the table for `hawser_certificate_expiry_timestamp_seconds`.

use std::time::{Duration, SystemTime};

use super::*;

/// Year, month, day.
type Date = (i32, u8, u8);

/// The build of `yaml` (with the shared Services) as if it ran on `date`.
fn built_on((year, month, day): Date, yaml: &str) -> Built {
    let objects = parse_documents(&format!("{SERVICES}\n---\n{yaml}")).unwrap();
    let seconds = rcgen::date_time_ymd(year, month, day).unix_timestamp();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap());
    build(&Snapshot::new(objects), &BuildConfig { now, ..BuildConfig::default() })
}

fn messages(built: &Built) -> Vec<String> {
    built.reports.iter().filter(|r| r.level() != Level::Info).map(|r| r.message.clone()).collect()
}

#[test]
fn certificates_expiring_within_14_days_are_served_and_reported() {
    // VALID certificates expire on 2999-01-01.
    let yaml = format!("{}{}", tls_secret("a-tls", &["a.com"], VALID), tls_ingress("i", "a.com", "a-tls"));
    let cases: &[(Date, &[&str])] = &[
        ((2998, 12, 1), &[]),
        ((2998, 12, 17), &[]),
        ((2998, 12, 18), &["Secret default/a-tls: the certificate expires on 2999-01-01 (in 14 days)"]),
        ((2998, 12, 31), &["Secret default/a-tls: the certificate expires on 2999-01-01 (in 1 day)"]),
    ];
    for (today, want) in cases {
        let built = built_on(*today, &yaml);
        assert_eq!(messages(&built), *want, "{today:?}");
        assert!(served_certificate(&built, "a.com"), "{today:?}: still served");
        if !want.is_empty() {
            assert_eq!(problems(&built), vec!["Expiring Ingress default/i spec.tls[0]"]);
            assert_eq!(
                built.reports.iter().find(|r| r.reason == Reason::Expiring).unwrap().level(),
                Level::Warning
            );
        }
    }
}

#[test]
fn the_table_keeps_each_served_certificates_expiry() {
    let yaml = format!(
        "{}{}---\n{}",
        tls_secret("a-tls", &["a.com"], VALID),
        tls_ingress("i", "a.com", "a-tls"),
        tls_ingress("j", "b.com", "missing")
    );
    let built = built_on((2998, 1, 1), &yaml);
    let expiry =
        |host: &str| built.table.virtual_host(host).and_then(|v| v.tls.as_ref()).map(|t| t.not_after);
    let new_year_2999 = rcgen::date_time_ymd(2999, 1, 1).unix_timestamp();
    assert_eq!(expiry("a.com"), Some(Some(new_year_2999)));
    assert_eq!(expiry("b.com"), Some(None), "no certificate, no expiry");
}
