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
