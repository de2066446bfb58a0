//! `proxy cert trust`: for the development CA in the folder, the command that trusts it on each
//! OS (and in each browser store), the command that undoes it, and its fingerprint to compare.

use std::path::Path;

use common::tls::CertInfo;

use super::files::CertError;
use super::files::fmt_time;
use crate::config::TlsFiles;
use crate::config::defaults::CA_CERT_NAME;
use crate::config::settings::TLS_CERT;

/// How the compose file mounts the keypair folder: `./conf/tls` at `/etc/proxy/tls`.
const HOST_FOLDER: &str = "conf/tls";

/// The commands that trust `ca.crt` (and undo it). `shown` is how they name the file; by default
/// `conf/tls/ca.crt` when the CA is in the image's default folder (the compose mount), else its
/// path.
pub fn trust(files: &TlsFiles, shown: Option<&str>) -> Result<String, CertError> {
    let ca = &files.ca_cert;
    if !ca.exists() {
        return Err(CertError::NoCa { path: ca.clone() });
    }
    let der = common::tls::load_certs(ca)
        .map_err(|e| CertError::Ca {
            path: ca.clone(),
            reason: e.to_string(),
        })?
        .swap_remove(0);
    let info = CertInfo::parse(&der, ca).map_err(|e| CertError::Ca {
        path: ca.clone(),
        reason: e.to_string(),
    })?;
    let path = shown.map_or_else(|| default_shown(ca), str::to_owned);
    Ok(commands(&info, &path))
}

fn default_shown(ca: &Path) -> String {
    let image_default = Path::new(TLS_CERT.meta.default).with_file_name(CA_CERT_NAME);
    if ca == image_default {
        format!("{HOST_FOLDER}/{CA_CERT_NAME}")
    } else {
        ca.display().to_string()
    }
}

/// The text: the CA's facts, then one block per OS or store.
fn commands(info: &CertInfo, path: &str) -> String {
    let cn = if info.common_name.is_empty() {
        info.subject.as_str()
    } else {
        info.common_name.as_str()
    };
    let short: String = info.fingerprint.replace(':', "")[..8].to_ascii_lowercase();
    let deb = format!("/usr/local/share/ca-certificates/containerize-dev-ca-{short}.crt");
    let win = path.replace('/', "\\");
    let constraints = if info.name_constraints.is_empty() {
        "none (this CA can sign for any name)".to_owned()
    } else {
        info.name_constraints.join(", ")
    };
    format!(
        "Development CA  {path}\n\
         Subject         {subject}\n\
         Valid until     {until}\n\
         May sign only   {constraints}\n\
         SHA-256         {fp}\n\
         \n\
         Trust it once, on the host, from the project folder: every leaf the proxy issues from it\n\
         is then trusted, renewals included. Each `undo:` line removes it again.\n\
         \n\
         Debian, Ubuntu\n  \
           sudo cp {path} {deb} && sudo update-ca-certificates\n  \
           undo: sudo rm {deb} && sudo update-ca-certificates --fresh\n\
         Fedora, RHEL, Arch (p11-kit)\n  \
           sudo trust anchor --store {path}\n  \
           undo: sudo trust anchor --remove {path}\n\
         macOS (System keychain; Safari, Chrome, curl)\n  \
           sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {path}\n  \
           undo: sudo security delete-certificate -c \"{cn}\" /Library/Keychains/System.keychain\n\
         Windows (current user's Root store; Edge, Chrome; confirm the dialog)\n  \
           certutil -user -addstore Root {win}\n  \
           undo: certutil -user -delstore Root \"{cn}\"\n\
         Firefox, and Chrome/Chromium on Linux (NSS; certutil from libnss3-tools or nss-tools)\n  \
           certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n \"{cn}\" -i {path}\n  \
           for p in ~/.mozilla/firefox/*/; do certutil -d \"sql:$p\" -A -t C,, -n \"{cn}\" -i {path}; done\n  \
           undo: certutil -d sql:$HOME/.pki/nssdb -D -n \"{cn}\"\n  \
           undo: for p in ~/.mozilla/firefox/*/; do certutil -d \"sql:$p\" -D -n \"{cn}\"; done\n  \
           (Firefox on Windows and macOS also trusts the OS store: security.enterprise_roots.enabled)\n\
         curl, without installing anything\n  \
           curl --cacert {path} https://localhost/\n\
         \n\
         Compare the fingerprint before trusting: openssl x509 -in {path} -noout -fingerprint -sha256\n",
        subject = info.subject,
        until = fmt_time(info.not_after),
        fp = info.fingerprint,
    )
}
