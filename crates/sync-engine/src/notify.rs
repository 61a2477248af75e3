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

/// The reasons a coordinator is most often told, in bokmål: the leading phrase of the engine's reason and its
/// translation. A reason not listed here is given in English, marked as such.
const NORWEGIAN_REASONS: [(&str, &str); 6] = [
    (
        "no contact in Dynamics has the mentor's member number",
        "ingen kontakt i Dynamics har likepersonens medlemsnummer; kontroller medlemsnummeret i appen eller registrer \
         medlemmet i Dynamics",
    ),
    (
        "the contact with the mentor's member number is deactivated in Dynamics",
        "kontakten med likepersonens medlemsnummer er deaktivert i Dynamics; aktiver den igjen eller rett \
         medlemsnummeret",
    ),
    (
        "the contact with the mentor's member number is linked to mentor",
        "kontakten med dette medlemsnummeret er allerede koblet til en annen likeperson i appen; to likepersoner kan \
         ikke ha samme medlemsnummer, så medlemsnummeret til en av dem må rettes",
    ),
    (
        "the contact changed in Dynamics again while it was being written",
        "kontakten ble endret i Dynamics igjen mens den ble skrevet; det prøves på nytt ved neste kjøring",
    ),
    (
        "the Dynamics row cannot be read",
        "kontakten i Dynamics har en verdi integrasjonen ikke kan lese (for eksempel et valg som mangler i \
         feltkoblingen)",
    ),
    (
        "Dynamics refused a duplicate",
        "Dynamics avviste endringen fordi den ville gitt et duplikat (for eksempel et medlemsnummer som en annen \
         kontakt allerede har)",
    ),
];

/// The reason in the message's language.
fn reason_in(language: Language, reason: &str) -> String {
    match language {
        Language::English => reason.to_owned(),
        Language::Norwegian => NORWEGIAN_REASONS
            .iter()
            .find(|(english, _)| reason.starts_with(english))
            .map_or_else(
                || format!("(teknisk melding, på engelsk) {reason}"),
                |(_, norwegian)| (*norwegian).to_owned(),
            ),
    }
}

/// The member as a message names them: by member number, or, for a mentor without one, by the app's id.
fn member_in(language: Language, member_number: Option<&str>, app_id: &str) -> String {
    match (language, member_number) {
        (Language::Norwegian, Some(number)) => format!("medlemsnummer {number}"),
        (Language::Norwegian, None) => format!("uten medlemsnummer (app-id {app_id})"),
        (Language::English, Some(number)) => format!("member number {number}"),
        (Language::English, None) => format!("without a member number (app id {app_id})"),
    }
}

/// A mentor's certification could not be written to Dynamics.
pub(crate) fn certification_failed(
    language: Language,
    member_number: Option<&str>,
    app_id: &str,
    reason: &str,
) -> Message {
    let member = member_in(language, member_number, app_id);
    let reason = reason_in(language, reason);
    match language {
        Language::Norwegian => Message {
            subject: format!("Likepersonsertifisering ({member}) ble ikke oppdatert i Min Side"),
            body: format!(
                "Hei,\n\nSertifiseringsstatusen til likepersonen med {member} kunne ikke oppdateres i HLFs \
                 Dynamics (Min Side).\nÅrsak: {reason}\n\nSynkroniseringen prøver igjen ved neste kjøring. Hvis \
                 likepersonen vises feil på den offentlige nettsiden, må det rettes manuelt i Min Side.\n\n\
                 Hilsen integrasjonen mellom likepersonappen og Dynamics"
            ),
        },
        Language::English => Message {
            subject: format!("Peer mentor certification ({member}) was not updated in Min Side"),
            body: format!(
                "Hello,\n\nThe certification status of the peer mentor with {member} could not be updated in HLF's \
                 Dynamics (Min Side).\nReason: {reason}\n\nThe sync tries again on its next run. If the mentor is \
                 shown wrongly on the public website, fix it by hand in Min Side.\n\n\
                 The peer-mentor app's Dynamics integration"
            ),
        },
    }
}

/// A field changed on both sides and waits for an admin.
pub(crate) fn conflict(language: Language, member_number: Option<&str>, app_id: &str, field: &str) -> Message {
    let member = member_in(language, member_number, app_id);
    match language {
        Language::Norwegian => Message {
            subject: format!("Motstridende endringer for likepersonen med {member} venter på avgjørelse"),
            body: format!(
                "Hei,\n\nFeltet «{field}» for likepersonen med {member} er endret både i appen og i Dynamics. Ingen av \
                 sidene oppdateres før en administrator velger verdi i integrasjonens kontrollpanel.\n\n\
                 Hilsen integrasjonen mellom likepersonappen og Dynamics"
            ),
        },
        Language::English => Message {
            subject: format!("Conflicting changes for the peer mentor with {member} wait for a decision"),
            body: format!(
                "Hello,\n\nThe field \"{field}\" of the peer mentor with {member} changed both in the app and in Dynamics. \
                 Neither side is updated until an administrator picks a value on the integration dashboard.\n\n\
                 The peer-mentor app's Dynamics integration"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_norwegian_message_is_norwegian_throughout_and_names_a_mentor_without_a_number_by_app_id() {
        let message = certification_failed(
            Language::Norwegian,
            None,
            "hlf-m7",
            "no contact in Dynamics has the mentor's member number; check the member number in the app or register \
             the member in Dynamics",
        );
        assert!(
            message.subject.contains("uten medlemsnummer (app-id hlf-m7)"),
            "{}",
            message.subject
        );
        assert!(
            !message.subject.contains('?') && !message.body.contains("medlem ?"),
            "{message:?}"
        );
        assert!(
            message
                .body
                .contains("ingen kontakt i Dynamics har likepersonens medlemsnummer"),
            "{}",
            message.body
        );
        assert!(!message.body.contains("no contact"), "{}", message.body);
        // A reason without a translation is marked as the technical English text it is.
        let other = certification_failed(Language::Norwegian, Some("1001"), "m1", "Dynamics answered 500 (): x");
        assert!(
            other
                .body
                .contains("(teknisk melding, på engelsk) Dynamics answered 500"),
            "{}",
            other.body
        );
        let english = conflict(Language::English, Some("1001"), "m1", "phone");
        assert!(english.subject.contains("member number 1001"), "{}", english.subject);
    }
}
