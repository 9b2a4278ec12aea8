// latchkey pages: a Show/Hide button beside every password field (ASVS 6.2.6), and a
// strength hint under new passwords that rewards length, the thing that matters.
// Served from /app.js: the Content-Security-Policy allows same-origin scripts only.
"use strict";
document.querySelectorAll("input[type=password]").forEach(function (input) {
  var reveal = document.createElement("button");
  reveal.type = "button";
  reveal.className = "reveal";
  reveal.textContent = "Show";
  reveal.setAttribute("aria-controls", input.id);
  reveal.setAttribute("aria-label", "Show password");
  reveal.addEventListener("click", function () {
    var shown = input.type === "text";
    input.type = shown ? "password" : "text";
    reveal.textContent = shown ? "Show" : "Hide";
    reveal.setAttribute("aria-label", shown ? "Show password" : "Hide password");
  });
  input.insertAdjacentElement("afterend", reveal);

  var minimum = parseInt(input.getAttribute("minlength") || "0", 10);
  if (input.autocomplete !== "new-password" || minimum === 0) {
    return;
  }
  var meter = document.createElement("meter");
  meter.min = 0;
  meter.max = 4;
  meter.id = input.id + "-strength";
  var label = document.createElement("span");
  label.className = "strength";
  label.setAttribute("aria-live", "polite");
  var words = ["too short", "fair", "good", "strong", "very strong"];
  function update() {
    var length = Array.from(input.value).length;
    var score = length < minimum ? 0 : Math.min(4, 1 + Math.floor((length - minimum) / 4));
    meter.value = score;
    label.textContent = input.value ? words[score] : "";
  }
  input.addEventListener("input", update);
  reveal.insertAdjacentElement("afterend", label);
  reveal.insertAdjacentElement("afterend", meter);
  update();
});

// Passkeys (WebAuthn): the server's options carry binary fields as base64url, which the
// browser API wants as bytes, and the answer goes back the same way. Buttons: "Add a
// passkey" (account page), "Sign in with a passkey" (login page), "Use a passkey" (the
// second step of a login).
function bytesFromBase64url(text) {
  var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  while (base64.length % 4) {
    base64 += "=";
  }
  var raw = atob(base64);
  var bytes = new Uint8Array(raw.length);
  for (var i = 0; i < raw.length; i++) {
    bytes[i] = raw.charCodeAt(i);
  }
  return bytes.buffer;
}

function base64urlFromBytes(buffer) {
  var bytes = new Uint8Array(buffer);
  var raw = "";
  for (var i = 0; i < bytes.length; i++) {
    raw += String.fromCharCode(bytes[i]);
  }
  return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function postJson(path, body) {
  var init = { method: "POST", credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  var response = await fetch(path, init);
  var data = await response.json().catch(function () { return {}; });
  if (!response.ok) {
    throw new Error(data.error || response.statusText);
  }
  return data;
}

function assertionJson(credential) {
  var response = credential.response;
  return {
    id: credential.id,
    rawId: base64urlFromBytes(credential.rawId),
    type: credential.type,
    response: {
      authenticatorData: base64urlFromBytes(response.authenticatorData),
      clientDataJSON: base64urlFromBytes(response.clientDataJSON),
      signature: base64urlFromBytes(response.signature),
      userHandle: response.userHandle ? base64urlFromBytes(response.userHandle) : null
    },
    extensions: credential.getClientExtensionResults()
  };
}

async function getPasskey(beginPath) {
  var options = await postJson(beginPath);
  var publicKey = options.publicKey;
  publicKey.challenge = bytesFromBase64url(publicKey.challenge);
  (publicKey.allowCredentials || []).forEach(function (allowed) {
    allowed.id = bytesFromBase64url(allowed.id);
  });
  return assertionJson(await navigator.credentials.get({ publicKey: publicKey }));
}

async function addPasskey(name) {
  var options = await postJson("/account/passkeys/begin");
  var publicKey = options.publicKey;
  publicKey.challenge = bytesFromBase64url(publicKey.challenge);
  publicKey.user.id = bytesFromBase64url(publicKey.user.id);
  (publicKey.excludeCredentials || []).forEach(function (excluded) {
    excluded.id = bytesFromBase64url(excluded.id);
  });
  var credential = await navigator.credentials.create({ publicKey: publicKey });
  var response = credential.response;
  await postJson("/account/passkeys/finish", {
    name: name,
    credential: {
      id: credential.id,
      rawId: base64urlFromBytes(credential.rawId),
      type: credential.type,
      response: {
        attestationObject: base64urlFromBytes(response.attestationObject),
        clientDataJSON: base64urlFromBytes(response.clientDataJSON)
      },
      extensions: credential.getClientExtensionResults()
    }
  });
}

function passkeyButton(id, action, then) {
  var button = document.getElementById(id);
  if (!button) {
    return;
  }
  var message = document.getElementById("passkey-message");
  button.addEventListener("click", function () {
    if (message) {
      message.textContent = "";
    }
    action().then(then).catch(function (error) {
      if (message) {
        message.textContent = "Passkey: " + error.message;
      }
    });
  });
}

function goNext() {
  var next = document.body.getAttribute("data-next");
  window.location.assign(next || "/home");
}

passkeyButton("add-passkey", function () {
  var name = document.getElementById("passkey-name");
  return addPasskey(name ? name.value : "");
}, function () { window.location.reload(); });
passkeyButton("passkey-login", function () {
  return getPasskey("/login/passkey/begin").then(function (credential) {
    return postJson("/login/passkey/finish", { credential: credential });
  });
}, goNext);
passkeyButton("passkey-second-factor", function () {
  return getPasskey("/login/second-factor/passkey/begin").then(function (credential) {
    return postJson("/login/second-factor/passkey/finish", { credential: credential });
  });
}, goNext);
document.querySelectorAll("button.delete-passkey").forEach(function (button) {
  button.addEventListener("click", function () {
    fetch("/account/passkeys/" + button.getAttribute("data-id"), {
      method: "DELETE", credentials: "same-origin", headers: { Accept: "application/json" }
    }).then(function () { window.location.reload(); });
  });
});

// A "Copy" button copies the field it names (a new API token, shown once).
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  button.addEventListener("click", function () {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) {
      return;
    }
    field.select();
    var done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard) {
      navigator.clipboard.writeText(field.value).then(done, function () {});
    }
  });
});
