// Forms with data-confirm="question" ask before they submit (the CSP allows no inline
// on...= handlers, so the question lives in the markup and the behaviour here).
document.addEventListener("submit", (event) => {
  const question = event.target.getAttribute && event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});
