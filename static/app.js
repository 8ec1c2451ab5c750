// Sign-in buttons say where they are going while the provider's page loads.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-leaving-text]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey) {
    return;
  }
  link.dataset.label = link.textContent;
  link.textContent = link.dataset.leavingText;
  link.setAttribute("aria-busy", "true");
  link.classList.add("leaving");
});
// Coming back with the browser's Back button restores the page from cache: reset the buttons.
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  for (const link of document.querySelectorAll("a[data-leaving-text][aria-busy]")) {
    link.textContent = link.dataset.label;
    link.removeAttribute("aria-busy");
    link.classList.remove("leaving");
  }
});
