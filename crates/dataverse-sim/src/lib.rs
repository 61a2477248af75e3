//! A local emulator of the Dataverse Web API v9.2 and the Azure AD token endpoint (being built; see issue 4).
