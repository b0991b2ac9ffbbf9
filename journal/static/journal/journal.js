// The journal and admin work without this file; it only saves a click: choosing a
// project or a language in a switcher applies it at once.
document.addEventListener("change", function (event) {
  var select = event.target;
  if (select.matches && select.matches("select[data-autosubmit]") && select.form) {
    select.form.submit();
  }
});
