// Passkeys: sign in with one, and add one, through WebAuthn (navigator.credentials).
// The server asks Supabase for the options and keeps the challenge id; this script only passes
// the options to the browser and posts what the authenticator signed back in a form.
// Without WebAuthn, every passkey control stays hidden.
(() => {
  "use strict";
  if (window.passkeysLoaded) return; // several includes may load this file on one page
  window.passkeysLoaded = true;
  if (!window.PublicKeyCredential || !navigator.credentials) return;

  const MESSAGES = {
    NotAllowedError: "The passkey request was cancelled or timed out. Nothing was changed; " +
      "try again when you are ready.",
    InvalidStateError: "This device already has a passkey for your account here.",
    SecurityError: "This browser refused to use passkeys on this address. Open the site at " +
      "its usual address (not an IP address) and try again.",
    NotSupportedError: "This device cannot make a passkey of a kind this site accepts. " +
      "Try another device or a security key.",
    AbortError: "The passkey request was stopped. Please try again.",
  };

  const toBytes = (text) => {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  };
  const toText = (buffer) => {
    let binary = "";
    for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  const withIds = (list) => (list || []).map((item) => ({ ...item, id: toBytes(item.id) }));

  // The options' JSON (base64url fields) as the objects navigator.credentials wants.
  function requestOptions(json) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return { ...json, challenge: toBytes(json.challenge),
             allowCredentials: withIds(json.allowCredentials) };
  }
  function creationOptions(json) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return { ...json, challenge: toBytes(json.challenge),
             user: { ...json.user, id: toBytes(json.user.id) },
             excludeCredentials: withIds(json.excludeCredentials) };
  }

  // The credential as PublicKeyCredential.toJSON() gives it (older browsers lack toJSON).
  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    const r = credential.response;
    const response = { clientDataJSON: toText(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      if (r.userHandle) response.userHandle = toText(r.userHandle);
    }
    return { id: credential.id, rawId: toText(credential.rawId), type: credential.type,
             response, clientExtensionResults: credential.getClientExtensionResults(),
             authenticatorAttachment: credential.authenticatorAttachment || undefined };
  }

  function say(form, message, link) {
    const status = form.querySelector("[data-passkey-status]");
    status.textContent = message;
    if (link && link.href) {
      const anchor = document.createElement("a");
      anchor.href = link.href;
      anchor.textContent = link.text;
      status.append(" ", anchor);
    }
  }

  // Ask the app for options; a refusal comes back as {message, href, link}.
  async function fetchOptions(form) {
    let response;
    try {
      response = await fetch(form.dataset.optionsUrl, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json",
                   "X-CSRFToken": form.elements.csrf_token.value },
        body: "{}",
      });
    } catch {
      throw { message: "This page could not reach the site. Check your connection and try again." };
    }
    const type = response.headers.get("Content-Type") || "";
    const body = type.startsWith("application/json") ? await response.json() : null;
    if (response.ok && body && body.options) return body.options;
    if (body && body.message) throw body;
    throw { message: "This page expired. Reload it and try again." };
  }

  function submitCredential(form, credential) {
    form.elements.credential.value = JSON.stringify(credentialJSON(credential));
    form.submit();
  }

  function explain(form, error) {
    if (error && typeof error.message === "string" && !(error instanceof Error)) {
      say(form, error.message, { href: error.href, text: error.link });
    } else {
      say(form, MESSAGES[error && error.name] ||
        "Your browser could not use a passkey. Please try again, or sign in another way.");
    }
  }

  // --- signing in ------------------------------------------------------------------------
  let autofill = null; // the AbortController of a pending conditional request

  async function signIn(form, conditional) {
    if (autofill) autofill.abort();
    autofill = null;
    const controller = new AbortController();
    if (conditional) autofill = controller;
    try {
      const options = await fetchOptions(form);
      say(form, conditional ? "" : "Follow your browser's prompt to use your passkey…");
      const credential = await navigator.credentials.get({
        publicKey: requestOptions(options), signal: controller.signal,
        mediation: conditional ? "conditional" : "optional",
      });
      say(form, "Signing you in…");
      submitCredential(form, credential);
    } catch (error) {
      if (controller.signal.aborted) return; // replaced by the button's request
      if (conditional) autofill = null;
      explain(form, error);
    }
  }

  async function setUpSignIn(form) {
    form.hidden = false;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      signIn(form, false);
    });
    const field = form.querySelector("[data-passkey-autofill]");
    if (field && PublicKeyCredential.isConditionalMediationAvailable &&
        await PublicKeyCredential.isConditionalMediationAvailable()) {
      field.hidden = false;
      // Options cost one of Supabase's rate-limited calls: ask when the field is used.
      field.querySelector("input").addEventListener("focus", () => {
        if (!autofill) signIn(form, true);
      });
    }
  }

  // --- adding one ------------------------------------------------------------------------
  async function add(form) {
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const options = await fetchOptions(form);
      say(form, "Follow your browser's prompt to create the passkey…");
      const credential = await navigator.credentials.create({ publicKey: creationOptions(options) });
      say(form, "Saving your passkey…");
      submitCredential(form, credential);
    } catch (error) {
      button.disabled = false;
      explain(form, error);
    }
  }

  for (const form of document.querySelectorAll("form[data-passkey-signin]")) setUpSignIn(form);
  for (const form of document.querySelectorAll("form[data-passkey-add]")) {
    form.hidden = false;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      add(form);
    });
  }
  for (const note of document.querySelectorAll("[data-passkey-unsupported]")) note.hidden = true;
  for (const offer of document.querySelectorAll("[data-passkey-offer]")) offer.hidden = false;
})();
