// The DSL's live badge: open illegal and suicide/self-harm incidents, pushed by the console
// (server-sent events from /live-badge). The pages work without it; this only adds the badge.
"use strict";
(function () {
  var badge = document.getElementById("live-badge");
  if (!badge || !window.EventSource) { return; }
  var source = new EventSource("/live-badge");
  source.onmessage = function (event) {
    var data = JSON.parse(event.data);
    if (data.urgent > 0) {
      badge.textContent = data.urgent + (data.urgent === 1 ? " urgent incident" : " urgent incidents") + " open: illegal or about suicide or self-harm";
      badge.hidden = false;
    } else {
      badge.textContent = "";
      badge.hidden = true;
    }
  };
})();
