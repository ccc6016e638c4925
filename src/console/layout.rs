//! The console's page frame and small pieces, as maud templates (checked when Tollgate is
//! compiled; every value escaped). One stylesheet and one script, both served by Tollgate
//! from `static/`: the Content-Security-Policy allows nothing inline.

use maud::{html, Markup, DOCTYPE};

use crate::signin::{Role, Session};

/// A whole page.
pub fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Tollgate" }
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    nav aria-label="Console" {
                        a class="brand" href="/console/" { "Tollgate" }
                        @if let Some(s) = session {
                            @match s.grant.role {
                                Role::Admin => {
                                    a href="/console/connectors" { "Connectors" }
                                    a href="/console/connections" { "Connections" }
                                    a href="/console/explain" { "Explain" }
                                    a href="/console/audit" { "Audit" }
                                }
                                Role::User => { a href="/console/me" { "My connections" } }
                            }
                            span class="muted" { (s.grant.principal) }
                            form method="post" action="/console/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button class="secondary" type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A POST button carrying the CSRF token and hidden fields.
pub fn action(session: &Session, path: &str, label: &str, fields: &[(&str, &str)], class: &str) -> Markup {
    html! {
        form class="inline" method="post" action=(path) {
            input type="hidden" name="csrf" value=(session.csrf);
            @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
            button class=(class) type="submit" { (label) }
        }
    }
}

/// A state or health word as a badge.
pub fn badge(word: &str) -> Markup {
    html! { span class={ "badge " (word) } { (word.replace('_', " ")) } }
}

/// Unix seconds as `2026-12-05 08:40 UTC` (or a dash).
pub fn when(at: Option<u64>) -> String {
    let Some(at) = at else { return "—".into() };
    let days = (at / 86_400) as i64;
    let secs = at % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", secs / 3600, (secs % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::when;

    #[test]
    fn formats_unix_times() {
        assert_eq!(when(Some(0)), "1970-01-01 00:00 UTC");
        assert_eq!(when(Some(1_764_924_000)), "2025-12-05 08:40 UTC");
        assert_eq!(when(Some(951_782_400)), "2000-02-29 00:00 UTC");
        assert_eq!(when(None), "—");
    }
}
