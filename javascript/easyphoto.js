// EasyPhoto tab: client-side helpers. A1111 injects every javascript/*.js into the page head.
// Keeps the user id field to the characters the server accepts, so a typo shows at once.
(function () {
    const allowed = /[^A-Za-z0-9_-]/g;
    function guardUserId(root) {
        const field = root.querySelector("#easyphoto_user_id textarea, #easyphoto_user_id input");
        if (!field || field.dataset.easyphotoGuarded) return;
        field.dataset.easyphotoGuarded = "1";
        field.addEventListener("input", () => {
            const cleaned = field.value.replace(allowed, "").slice(0, 64);
            if (cleaned !== field.value) {
                field.value = cleaned;
                field.dispatchEvent(new Event("input", { bubbles: true }));
            }
        });
    }
    const app = () => (window.gradioApp ? window.gradioApp() : document);
    new MutationObserver(() => guardUserId(app())).observe(document, { childList: true, subtree: true });
})();
