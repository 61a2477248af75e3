//! Coordinator notification texts, in Norwegian bokmål (HLF's default) and English. They name the member by
//! member number only: no personal values leave the app in a notification.

use integration_config::Language;

/// A notification's subject and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The subject line.
    pub subject: String,
    /// The body text.
    pub body: String,
}

/// A mentor's certification could not be written to Dynamics.
pub(crate) fn certification_failed(language: Language, member_number: Option<&str>, reason: &str) -> Message {
    let member = member_number.unwrap_or("?");
    match language {
        Language::Norwegian => Message {
            subject: format!("Likepersonsertifisering for medlem {member} ble ikke oppdatert i Min Side"),
            body: format!(
                "Hei,\n\nSertifiseringsstatusen til likepersonen med medlemsnummer {member} kunne ikke oppdateres i HLFs \
                 Dynamics (Min Side).\nÅrsak: {reason}\n\nSynkroniseringen prøver igjen ved neste kjøring. Hvis \
                 likepersonen vises feil på den offentlige nettsiden, må det rettes manuelt i Min Side.\n\n\
                 Hilsen integrasjonen mellom likepersonappen og Dynamics"
            ),
        },
        Language::English => Message {
            subject: format!("Peer mentor certification for member {member} was not updated in Min Side"),
            body: format!(
                "Hello,\n\nThe certification status of the peer mentor with member number {member} could not be \
                 updated in HLF's Dynamics (Min Side).\nReason: {reason}\n\nThe sync tries again on its next run. If \
                 the mentor is shown wrongly on the public website, fix it by hand in Min Side.\n\n\
                 The peer-mentor app's Dynamics integration"
            ),
        },
    }
}

/// A field changed on both sides and waits for an admin.
pub(crate) fn conflict(language: Language, member_number: Option<&str>, field: &str) -> Message {
    let member = member_number.unwrap_or("?");
    match language {
        Language::Norwegian => Message {
            subject: format!("Motstridende endringer for medlem {member} venter på avgjørelse"),
            body: format!(
                "Hei,\n\nFeltet «{field}» for medlemsnummer {member} er endret både i appen og i Dynamics. Ingen av \
                 sidene oppdateres før en administrator velger verdi i integrasjonens kontrollpanel.\n\n\
                 Hilsen integrasjonen mellom likepersonappen og Dynamics"
            ),
        },
        Language::English => Message {
            subject: format!("Conflicting changes for member {member} wait for a decision"),
            body: format!(
                "Hello,\n\nThe field \"{field}\" of member number {member} changed both in the app and in Dynamics. \
                 Neither side is updated until an administrator picks a value on the integration dashboard.\n\n\
                 The peer-mentor app's Dynamics integration"
            ),
        },
    }
}
