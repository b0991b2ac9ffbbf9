// The journal works without this file; it only saves a click: choosing a
// project in the switcher opens it at once.
document.addEventListener("change", function (event) {
  var select = event.target;
  if (select.matches && select.matches("select[data-autosubmit]") && select.form) {
    select.form.submit();
  }
});
