//! Secrets come from the environment, never from the config file: a setting names the variable
//! that holds one (`auth_token_env = "TWILIO_AUTH_TOKEN"`).

/// A secret from the environment variable a setting names (`auth_token_env = "…"`): secrets
/// never live in the config file. The error names the secret and the variable.
pub fn secret_from_env(what: &str, variable: &str) -> Result<String, String> {
    std::env::var(variable).map_err(|_| {
        format!("the {what} is read from the environment variable {variable}, which is not set")
    })
}
