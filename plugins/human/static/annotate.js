// Keyboard shortcuts for the annotation page: 1 = A, 2 = B, 3 = tie, s = skip.
(function () {
  "use strict";
  var keys = {"1": "left", "2": "right", "3": "tie", "s": "skip", "S": "skip"};
  var form = document.getElementById("label-form");
  if (!form) { return; }
  var sent = false;
  form.addEventListener("submit", function (event) {
    if (sent) { event.preventDefault(); }  // one label per page: a double click is not two requests
    sent = true;
  });
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT" && target.type === "text")) { return; }
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var choice = keys[event.key];
    if (!choice) { return; }
    var button = form.querySelector('button[name="choice"][value="' + choice + '"]');
    if (button) { event.preventDefault(); button.click(); }
  });
}());
