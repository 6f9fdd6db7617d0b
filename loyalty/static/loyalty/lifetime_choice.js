// "Counts toward lifetime?" follows the kind of change to the program's default for it, until the staff member
// answers it themselves (loyalty.forms.LifetimeChoiceMixin).
(function () {
  function wire(select) {
    const form = select.form;
    const defaults = JSON.parse(select.dataset.lifetimeDefaults || "{}");
    let answered = false;
    form.querySelectorAll("input[name=counts_toward_lifetime]").forEach(function (radio) {
      radio.addEventListener("change", function () { answered = true; });
    });
    select.addEventListener("change", function () {
      if (answered || !defaults[select.value]) return;
      const radio = form.querySelector("input[name=counts_toward_lifetime][value=" + defaults[select.value] + "]");
      if (radio) { radio.checked = true; radio.dispatchEvent(new Event("input", {bubbles: true})); }
    });
  }
  function start() { document.querySelectorAll("select[data-lifetime-defaults]").forEach(wire); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
