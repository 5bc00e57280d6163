// gatemesh pages in two languages: French and English, chosen from the browser's language,
// with a switch kept on the device. The API keeps its stable codes; only the words change.
"use strict";


const WORDS = {
  en: {
    welcome: "WELCOME", goodbye: "GOODBYE", stop: "STOP", attention: "ATTENTION", not_checked: "NOT CHECKED",
    catching_up: "Catching up: this scanner just started and may not know of entries at other gates yet",
    paused: "PAUSED — let nobody in", the_event: "the whole event", zone: "zone", since: "since",
    confirm: "Checked — let in", hint: "tap or scan the next ticket", search: "Search",
    search_placeholder: "Code will not scan? Search a name or order", check_in: "Check in",
    no_match: "No ticket matches", cancelled: "cancelled", inside: "inside now", entries_left: "entries left",
    ticket: "Ticket", order: "order", first_used: "First used at gate", repeat: "Same scan again: already admitted a moment ago",
    entry: "entry", exit: "exit", gate: "Gate", manual: "checked in by hand",
    undo: "Undo last admit", undone_title: "UNDONE", undone: "Admit undone: the ticket has its entry back", switch_in: "Switch to entry", switch_out: "Switch to exit",
    unreachable: "The node cannot be reached: this ticket was NOT checked. Check the Wi-Fi, then scan again.",
    reachable: "node reachable", unreachable_link: "node unreachable — scans are NOT checked",
    setup_title: "Set up this scanner", setup_hint: "Chosen once; kept on this device.", direction: "Direction",
    in_entry: "in (entry)", out_exit: "out (exit)", start: "Start scanning", code_placeholder: "Scan or type a ticket code, then Enter",
    check: "Check", use_camera: "Use camera", stop_camera: "Stop camera",
    // dashboard
    admitted: "Admitted", denied: "Denied", admits_minute: "Admits / minute", checked_in: "Checked in",
    double_entries: "Double entries", peers_online: "Peers online", arrivals: "Arrivals per 5 minutes (last hour; green admitted, red denied)",
    inside_zone: "Inside now, by zone", by_gate: "By gate", denied_reason: "Denied, by reason", by_list: "By tier (check-in list): each person once",
    peers: "Peers", alerts: "Alerts", conflicts: "Double entries (conflicts)", none: "none", total: "all",
    col_zone: "zone", col_inside: "inside", col_capacity: "capacity", col_gate: "gate", col_in: "in", col_denied: "denied",
    col_reason: "reason", col_count: "count", col_tier: "tier", col_admitted: "admitted", col_checked: "checked in",
    col_peer: "peer", col_state: "state", col_last_seen: "last seen", col_ticket: "ticket", col_first: "first entry", col_doubles: "double entries",
    online: "online", offline: "offline", live: "live", reconnecting: "reconnecting…", of: "of",
    phones_ca: "Stewards' phones over HTTPS: install the event certificate once", new_doubles: "new double entries", manual_at: "checked in by hand at gate", lost_peer: "lost contact with", event_mismatch: "refused: another event.json (other rules) on", forged_at: "forged or unknown code at gate",
    over_capacity: "over capacity by", paused_banner: "PAUSED by the organizer:", enter_token: "Enter the staff token.",
    cannot_reach: "The node cannot be reached.", open: "Open", staff_token: "Staff token",
    offline_checked: "Checked on this phone — offline", waiting: "waiting", phone_link_down: "node unreachable — checking on this phone",
    paired_as: "Paired as", unpaired: "This phone was unpaired by the organizer: ask a supervisor", pair_title: "Pair a phone",
    pair_name: "Phone name", pair_admin: "Admin token", pair_go: "Pair", pair_hint: "Open this link on the phone, or scan the code with its camera:",
    not_ready_offline: "The node cannot be reached and this phone has no copy of the tickets yet: NOT checked.",
    // roles at the gate
    role_steward: "Steward", role_supervisor: "Supervisor", role_pin_hint: "Undo, hand check-in and gate pause ask for the supervisor's PIN",
    gate_pause: "Pause this gate (5 min)", gate_resume: "Resume gate", paused_by: "paused by", until: "until",
    pin_title: "Supervisor's PIN", pin_hint: "4 to 12 digits", pin_ok: "OK", pin_cancel: "Cancel", pin_format: "The PIN is 4 to 12 digits.",
    error_supervisor_only: "Only a supervisor can do this, and this device is a steward's: ask a supervisor.",
    error_pin_required: "This needs the supervisor's PIN: nothing was done.",
    error_pin_wrong: "Wrong PIN: nothing was done.",
    error_pin_locked: "Too many wrong PINs: wait a minute, then try again.",
    unreachable_action: "The node cannot be reached: nothing was done. Check the Wi-Fi, then try again.",
    audit_title: "Supervisor actions", col_time: "time", col_action: "action", col_device: "device",
    action_undo: "admit undone", action_hand_checkin: "checked in by hand", action_gate_pause: "gate paused (5 min)", action_gate_resume: "gate resumed",
    audit_steward: "not counted (a steward's device)", paused_banner_by: "PAUSED by supervisor",
  },
  fr: {
    welcome: "BIENVENUE", goodbye: "AU REVOIR", stop: "STOP", attention: "ATTENTION", not_checked: "NON VÉRIFIÉ",
    catching_up: "Synchronisation : ce scanner vient de démarrer et peut ignorer des entrées faites à d'autres portes",
    paused: "PAUSE — ne laissez entrer personne", the_event: "tout l'événement", zone: "zone", since: "depuis",
    confirm: "Vérifié — laisser entrer", hint: "touchez ou scannez le billet suivant", search: "Chercher",
    search_placeholder: "Code illisible ? Chercher un nom ou une commande", check_in: "Faire entrer",
    no_match: "Aucun billet trouvé", cancelled: "annulé", inside: "à l'intérieur", entries_left: "entrées restantes",
    ticket: "Billet", order: "commande", first_used: "Déjà utilisé à la porte", repeat: "Même scan : déjà admis à l'instant",
    entry: "entrée", exit: "sortie", gate: "Porte", manual: "entrée manuelle",
    undo: "Annuler la dernière entrée", undone_title: "ANNULÉ", undone: "Entrée annulée : le billet retrouve son entrée", switch_in: "Passer en entrée", switch_out: "Passer en sortie",
    unreachable: "Le nœud est injoignable : ce billet n'a PAS été vérifié. Vérifiez le Wi-Fi puis scannez à nouveau.",
    reachable: "nœud joignable", unreachable_link: "nœud injoignable — les scans ne sont PAS vérifiés",
    setup_title: "Configurer ce scanner", setup_hint: "Choisi une fois ; gardé sur cet appareil.", direction: "Sens",
    in_entry: "entrée", out_exit: "sortie", start: "Commencer à scanner", code_placeholder: "Scannez ou tapez un code de billet, puis Entrée",
    check: "Vérifier", use_camera: "Utiliser la caméra", stop_camera: "Arrêter la caméra",
    // tableau de bord
    admitted: "Admis", denied: "Refusés", admits_minute: "Entrées / minute", checked_in: "Entrés",
    double_entries: "Doubles entrées", peers_online: "Pairs en ligne", arrivals: "Arrivées par 5 minutes (dernière heure ; vert admis, rouge refusés)",
    inside_zone: "À l'intérieur, par zone", by_gate: "Par porte", denied_reason: "Refus, par motif", by_list: "Par type de billet (liste) : chaque personne une fois",
    peers: "Pairs", alerts: "Alertes", conflicts: "Doubles entrées (conflits)", none: "aucune", total: "total",
    col_zone: "zone", col_inside: "dedans", col_capacity: "capacité", col_gate: "porte", col_in: "entrées", col_denied: "refus",
    col_reason: "motif", col_count: "nombre", col_tier: "type", col_admitted: "admis", col_checked: "entrés",
    col_peer: "pair", col_state: "état", col_last_seen: "vu à", col_ticket: "billet", col_first: "première entrée", col_doubles: "doubles entrées",
    online: "en ligne", offline: "hors ligne", live: "en direct", reconnecting: "reconnexion…", of: "sur",
    phones_ca: "Téléphones des agents en HTTPS : installez une fois le certificat de l'événement", new_doubles: "nouvelles doubles entrées", manual_at: "entrée manuelle à la porte", lost_peer: "contact perdu avec", event_mismatch: "refusé : un autre event.json (d'autres règles) sur", forged_at: "code falsifié ou inconnu à la porte",
    over_capacity: "au-delà de la capacité de", paused_banner: "EN PAUSE par l'organisateur :", enter_token: "Saisissez le jeton du personnel.",
    cannot_reach: "Le nœud est injoignable.", open: "Ouvrir", staff_token: "Jeton du personnel",
    offline_checked: "Vérifié sur ce téléphone — hors ligne", waiting: "en attente", phone_link_down: "nœud injoignable — vérification sur ce téléphone",
    paired_as: "Appairé comme", unpaired: "Ce téléphone a été désappairé par l'organisateur : voyez un superviseur", pair_title: "Appairer un téléphone",
    pair_name: "Nom du téléphone", pair_admin: "Jeton administrateur", pair_go: "Appairer", pair_hint: "Ouvrez ce lien sur le téléphone, ou scannez le code avec son appareil photo :",
    not_ready_offline: "Le nœud est injoignable et ce téléphone n'a pas encore la liste des billets : NON vérifié.",
    // rôles à la porte
    role_steward: "Agent", role_supervisor: "Superviseur", role_pin_hint: "Annuler, faire entrer à la main et mettre la porte en pause demandent le code PIN du superviseur",
    gate_pause: "Mettre cette porte en pause (5 min)", gate_resume: "Reprendre la porte", paused_by: "mise en pause par", until: "jusqu'à",
    pin_title: "Code PIN du superviseur", pin_hint: "4 à 12 chiffres", pin_ok: "OK", pin_cancel: "Annuler", pin_format: "Le code PIN compte 4 à 12 chiffres.",
    error_supervisor_only: "Seul un superviseur peut le faire, et cet appareil est celui d'un agent : appelez un superviseur.",
    error_pin_required: "Il faut le code PIN du superviseur : rien n'a été fait.",
    error_pin_wrong: "Code PIN erroné : rien n'a été fait.",
    error_pin_locked: "Trop de codes PIN erronés : attendez une minute, puis réessayez.",
    unreachable_action: "Le nœud est injoignable : rien n'a été fait. Vérifiez le Wi-Fi, puis réessayez.",
    audit_title: "Actions des superviseurs", col_time: "heure", col_action: "action", col_device: "appareil",
    action_undo: "entrée annulée", action_hand_checkin: "entrée manuelle", action_gate_pause: "porte mise en pause (5 min)", action_gate_resume: "porte reprise",
    audit_steward: "non comptée (appareil d'un agent)", paused_banner_by: "EN PAUSE par le superviseur",
  },
};
// The reason codes the API keeps stable, in words for the steward.
const REASONS = {
  en: {
    ok: "Welcome in", malformed: "Not a ticket code", invalid_signature: "Forged or damaged ticket",
    unknown_ticket: "Ticket not known", wrong_event: "Ticket for another event", revoked: "Ticket cancelled",
    not_yet_valid: "Ticket not valid yet", expired: "Ticket expired", wrong_zone: "Ticket not valid for this zone",
    wrong_list: "Not this door: ticket type not on its list", already_redeemed: "Already used",
    paused: "Entry paused by the organizer: let nobody in", zone_full: "Zone full: wait for people to leave",
    code_expired: "Old code: ask for the live code on the holder's phone",
  },
  fr: {
    ok: "Bienvenue", malformed: "Ce n'est pas un code de billet", invalid_signature: "Billet falsifié ou abîmé",
    unknown_ticket: "Billet inconnu", wrong_event: "Billet d'un autre événement", revoked: "Billet annulé",
    not_yet_valid: "Billet pas encore valable", expired: "Billet expiré", wrong_zone: "Billet non valable pour cette zone",
    wrong_list: "Mauvaise porte : ce type de billet n'y entre pas", already_redeemed: "Déjà utilisé",
    paused: "Entrées suspendues par l'organisateur : ne laissez entrer personne", zone_full: "Zone pleine : attendez des sorties",
    code_expired: "Code périmé : demandez le code vivant sur le téléphone",
  },
};
let lang = window.localStorage.getItem("gatemesh.lang") || ((navigator.language || "en").toLowerCase().startsWith("fr") ? "fr" : "en");
function t(key) { return (WORDS[lang] || WORDS.en)[key] || WORDS.en[key] || key; }
function reasonWords(d) {
  if (d.repeat) return t("repeat");
  return (REASONS[lang] || REASONS.en)[d.reason] || d.words || d.message;
}

// Switch language and keep the choice.
function switchLanguage() {
  lang = lang === "fr" ? "en" : "fr";
  window.localStorage.setItem("gatemesh.lang", lang);
}

// Put the words on every element marked `data-i18n` (text) or `data-i18n-placeholder`.
function translatePage() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  const sw = document.getElementById("lang");
  if (sw) sw.textContent = lang === "fr" ? "EN" : "FR";
}

// A time of day in the page's language (24-hour in French).
function localTime(ms) {
  return new Date(ms).toLocaleTimeString(lang === "fr" ? "fr-FR" : undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// The same to the minute (when a supervisor's pause runs out).
function localHourMinute(ms) {
  return new Date(ms).toLocaleTimeString(lang === "fr" ? "fr-FR" : undefined, { hour: "2-digit", minute: "2-digit" });
}
