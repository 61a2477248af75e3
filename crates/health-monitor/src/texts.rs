//! Admin notification texts, in Norwegian bokmål (HLF's default) and English. Alert messages name members by
//! member number only.

use integration_config::Language;
use sync_store::Severity;

pub(crate) use sync_engine::Message;

/// An alert was raised (or reached a new stage).
pub(crate) fn alert_raised(language: Language, organisation: &str, severity: Severity, message: &str) -> Message {
    match language {
        Language::Norwegian => {
            let level = match severity {
                Severity::Critical => "KRITISK",
                Severity::Warning => "Advarsel",
            };
            Message {
                subject: format!("[{level}] Dynamics-integrasjonen for {organisation}"),
                body: format!(
                    "Hei,\n\nIntegrasjonen mellom likepersonappen og Dynamics har et varsel for {organisation}:\n\n\
                     {message}\n\n(Varselteksten over er på engelsk, slik den vises i kontrollpanelet og driftsboken.)\
                     \n\nHilsen integrasjonen mellom likepersonappen og Dynamics"
                ),
            }
        }
        Language::English => {
            let level = match severity {
                Severity::Critical => "CRITICAL",
                Severity::Warning => "Warning",
            };
            Message {
                subject: format!("[{level}] Dynamics integration of {organisation}"),
                body: format!(
                    "Hello,\n\nThe peer-mentor app's Dynamics integration raised an alert for {organisation}:\n\n\
                     {message}\n\nThe peer-mentor app's Dynamics integration"
                ),
            }
        }
    }
}

/// An alert's cause is gone.
pub(crate) fn alert_resolved(language: Language, organisation: &str, message: &str) -> Message {
    match language {
        Language::Norwegian => Message {
            subject: format!("[Løst] Dynamics-integrasjonen for {organisation}"),
            body: format!(
                "Hei,\n\nÅrsaken til dette varselet for {organisation} er borte, og varselet er lukket:\n\n{message}\n\n\
                 Hilsen integrasjonen mellom likepersonappen og Dynamics"
            ),
        },
        Language::English => Message {
            subject: format!("[Resolved] Dynamics integration of {organisation}"),
            body: format!(
                "Hello,\n\nThe cause of this alert for {organisation} is gone and the alert is closed:\n\n{message}\n\n\
                 The peer-mentor app's Dynamics integration"
            ),
        },
    }
}
