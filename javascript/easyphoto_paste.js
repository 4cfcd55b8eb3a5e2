// The host's paste mechanism calls switch_to_<tab> after pasting into a tab; our paste button
// is on our own tab already, so there is nothing to switch.
function switch_to_easyphoto() {}
