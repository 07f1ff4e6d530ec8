// PolyCSTR companion book: small client-side fixes.
//
// The book renders the papermill-executed copies in book/executed/ (gitignored), but
// the launch buttons (Binder, Colab) must open the parameterised source notebooks in
// notebooks/. Rewrite "book/executed/" to "notebooks/" in absolute links to those
// services (and to the repository); relative links (the .ipynb download) are kept.
(function () {
  "use strict";
  var hosts = /^https?:\/\/(mybinder\.org|colab\.research\.google\.com|github\.com)\//;
  function fixLaunchLinks() {
    var links = document.querySelectorAll("a[href*='book/executed/'], a[href*='book%2Fexecuted%2F']");
    links.forEach(function (a) {
      var href = a.getAttribute("href");
      if (!hosts.test(href)) { return; }
      a.setAttribute("href", href
        .replace(/book\/executed\//g, "notebooks/")
        .replace(/book%2Fexecuted%2F/g, "notebooks%2F"));
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", fixLaunchLinks);
  } else {
    fixLaunchLinks();
  }
})();
