// Names and defaults shared by every place that takes a pkcs11: key (the CLI's commands and the sidecar).

/** The environment variable that names the PKCS#11 module when --pkcs11-module is not given. */
export const PKCS11_MODULE_ENV = 'AGENT_GATEWAY_PKCS11_MODULE';

// There is deliberately no default module. The module decides where the key really lives: a default of
// SoftHSM2 (a file-backed software token) would let a deployment believe its key is in hardware while it
// sits in /var/lib/softhsm. The operator names the module of the device they trust.

/** Where Debian puts the modules this project documents, for messages that ask for --pkcs11-module. */
export const MODULE_EXAMPLES =
  'SoftHSM2: /usr/lib/softhsm/libsofthsm2.so; a TPM through tpm2-pkcs11: ' +
  '/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so; smart cards through OpenSC: ' +
  '/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so';

const MULTIARCH: Readonly<Record<string, string>> = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' };

/**
 * Where Debian's libengine-pkcs11-openssl installs OpenSSL's PKCS#11 engine on this architecture. A default
 * is safe here: the engine decides nothing, it only loads the module named above.
 */
export function defaultEnginePath(): string {
  return `/usr/lib/${MULTIARCH[process.arch] ?? `${process.arch}-linux-gnu`}/engines-3/pkcs11.so`;
}
