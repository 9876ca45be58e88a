/**
 * Every string the viewer shows to a user, in one place: English and French objects of the
 * same type, one chosen at start-up (the language toggle stores the choice and reloads).
 */

/** Counts as each language writes them: "12,345", "12 345". */
const countEn = (n: number): string => n.toLocaleString("en-GB");
const countFr = (n: number): string => n.toLocaleString("fr-FR");

export const en = {
  locale: "en-GB",
  language: {
    /** The toggle offers the other language, named in that language. */
    other: "fr" as Language,
    otherName: "Français",
    switchHint: "Afficher en français",
  },
  app: {
    name: "IAIN",
    tagline: "Digital pathology · C³ cooperation",
  },
  worklist: {
    title: "Worklist",
    searchLabel: "Search cases and slides",
    searchPlaceholder: "Search by reference, organ, stain or file name…",
    loading: "Loading the worklist…",
    loadFailed: (why: string) => `The worklist could not be loaded: ${why}`,
    empty: "No slides yet. Ingest one with: iain ingest FILE",
    noCases:
      "No cases yet. Slides join their case by barcode, file name or the lab system, or by hand from the slide page.",
    noMatch: (query: string) =>
      query ? `No case or slide matches “${query}”.` : "No case or slide matches these filters.",
    noCaseMatch: (query: string) =>
      query ? `No case matches “${query}”.` : "No case matches these filters.",
    caseCount: (from: number, to: number, total: number) =>
      total === 0
        ? "No cases"
        : from === 1 && to === total
          ? `${countEn(total)} case${total === 1 ? "" : "s"}`
          : `${countEn(from)}–${countEn(to)} of ${countEn(total)} case${total === 1 ? "" : "s"}`,
    sectionCount: (shown: number, total: number) =>
      shown === total
        ? `${countEn(total)} slide${total === 1 ? "" : "s"}`
        : `${countEn(shown)} of ${countEn(total)} slides`,
    filters: "Search and filters",
    status: "Case status",
    allStatuses: "All statuses",
    stain: "Stain",
    stainPlaceholder: "Stain (HE, HER2…)",
    received: "Received",
    since: "Received from",
    until: "Received until",
    sort: "Sort by",
    sorts: { date: "Date received", reference: "Reference", status: "Status" } as Record<string, string>,
    order: "Order",
    orders: {
      date: { desc: "Newest first", asc: "Oldest first" },
      reference: { asc: "A → Z", desc: "Z → A" },
      status: { asc: "Ascending", desc: "Descending" },
    } as Record<string, Record<string, string>>,
    clear: "Clear",
    clearHint: "Clear the search and filters",
    casesTitle: "Cases",
    caseStatuses: {
      received: "Received",
      in_progress: "In progress",
      signed_out: "Signed out",
    } as Record<string, string>,
    receivedOn: (date: string) => `Received ${date}`,
    receivedIn: (year: number) => `Received in ${year}`,
    slideCount: (n: number) => `${n} slide${n === 1 ? "" : "s"}`,
    moreSlides: (n: number) => `Show all ${n} slides`,
    sideBySide: "Open side by side",
    sideBySideHint: (n: number) => `Show the case's first ${n} slides side by side`,
    noSlides: "No slide of this case yet.",
    noStain: "Stain ?",
    loadMore: "Load more",
    loadingMore: "Loading…",
    sharedTitle: "Shared with me",
    sharedHint: "Slides other centres share with you, de-identified.",
    unlinkedTitle: "To be linked",
    unlinkedHint:
      "Slides no barcode, file name or lab record linked to a case: open one to set its case, block and stain.",
    sectionFailed: (why: string) => `This list could not be loaded: ${why}`,
    columns: {
      thumbnail: "Preview",
      name: "Name",
      centre: "Centre",
      vendor: "Scanner format",
      size: "Size",
      status: "Status",
      added: "Added",
    },
    open: (name: string) => `Open ${name}`,
    notReady: "This slide is not ready to view yet.",
    conversionQueued: "Queued for conversion",
    conversionProgress: (percent: number | null) =>
      percent === null ? "Converting…" : `Converting ${Math.floor(percent)}%`,
    conversionFailed: "Conversion failed",
    conversionPendingHint: "Opens now, from the original file; an optimised copy is being prepared.",
    conversionFailedHint: (why: string | null) =>
      `The optimised copy could not be made${why ? `: ${why}` : ""}. The slide opens from its original file.`,
  },
  /** A slide's case, block and stain: the slide page's header, and its editing form. */
  placement: {
    caseOf: (reference: string) => `Case ${reference}`,
    blockOf: (block: string) => `Block ${block}`,
    noCase: "Not linked to a case",
    edit: "Edit case / block / stain",
    editHint: "Put this slide into its case, with its block and stain",
    title: "Case, block and stain",
    intro: "A reference the centre has no case of yet makes a new case. Empty: the slide leaves its case.",
    reference: "Case reference",
    referencePlaceholder: "e.g. B26-00123",
    part: "Part",
    block: "Block",
    level: "Level",
    stain: "Stain",
    stainPlaceholder: "e.g. HE, HER2",
    save: "Save",
    cancel: "Cancel",
    saving: "Saving…",
    saved: "Saved.",
    failed: (why: string) => `Not saved: ${why}`,
  },
  /** OpenSlide's format names (what the hub reports as `vendor`), as users know them. */
  vendors: {
    aperio: "Aperio SVS",
    dicom: "DICOM WSI",
    "generic-tiff": "Generic TIFF",
    hamamatsu: "Hamamatsu",
    leica: "Leica SCN",
    mirax: "3DHISTECH MRXS",
    philips: "Philips TIFF",
    sakura: "Sakura SVSlide",
    trestle: "Trestle",
    ventana: "Ventana BIF",
    zeiss: "Zeiss CZI",
  } as Record<string, string>,
  status: {
    ready: "Ready",
    processing: "Processing",
    failed: "Failed",
  } as Record<string, string>,
  viewer: {
    back: "Worklist",
    loading: "Loading slide…",
    notFoundTitle: "Slide not found",
    notFound: (id: string) => `There is no slide “${id}”, or you may not view it.`,
    loadFailed: (why: string) => `The slide could not be loaded: ${why}`,
    imageFailed: (why: string) => `The slide's image could not be opened: ${why}`,
    backToWorklist: "Back to the worklist",
    deidentified: "De-identified view",
    deidentifiedHint:
      "A slide shared by another centre: shown without its name, label, annotations or layers.",
    protocol: "Tiles",
    protocols: { dzi: "DeepZoom", iiif: "IIIF" },
    protocolHint: "Tile protocol the viewer uses to fetch the image",
    magnificationHint: "Magnification on screen (40× ≈ 0.25 µm per pixel)",
    noScale: "No scale: pixel size unknown",
    scaleHint: "Scale bar",
    toolbar: "View",
    magnifications: "Magnification",
    magnifyTo: (mag: string) => `View at ${mag} (as through a ${mag} objective)`,
    rotateLeft: "Rotate 90° anticlockwise",
    rotateRight: "Rotate 90° clockwise",
    rotation: "Rotation",
    flip: "Flip horizontally",
    copyLink: "Copy link",
    copyLinkHint: "Copy a link to this exact view",
    linkCopied: "Link copied",
    help: "Keyboard shortcuts",
    close: "Close",
    shortcuts: [
      ["+ / −", "Zoom in / out"],
      ["← ↑ → ↓", "Pan"],
      ["1 … 6", "1.25×, 2.5×, 5×, 10×, 20×, 40×"],
      ["r / R", "Rotate 90° clockwise / anticlockwise"],
      ["f", "Flip horizontally"],
      ["h", "Whole slide (home view)"],
      ["n / p", "Next / previous slide of the case (else of the worklist)"],
      ["?", "Show or hide this help"],
      ["a", "Show or hide annotations"],
      ["o", "Show or hide the layers (heatmaps, detections)"],
      ["Enter / Esc", "Finish / cancel the polygon being drawn"],
      ["Del", "Delete the selected annotation"],
      ["Ctrl+Z", "Undo the last annotation change"],
    ] as [string, string][],
  },
  /** Drawing, measuring and editing annotations on the slide page. */
  annotations: {
    title: "Annotations",
    panel: "Annotations panel",
    collapse: "Hide the annotations panel",
    expand: "Show the annotations panel",
    tools: "Annotation tools",
    toolNames: {
      pan: "Select / move",
      point: "Point",
      rectangle: "Rectangle",
      ellipse: "Ellipse",
      polygon: "Polygon",
      freehand: "Freehand",
      line: "Ruler",
    } as Record<string, string>,
    toolHints: {
      pan: "Pan the slide; click an annotation to select it, drag it or its vertices to change it",
      point: "Click to place a point",
      rectangle: "Drag from one corner to the other",
      ellipse: "Drag across the ellipse's box",
      polygon:
        "Click each vertex; double-click, Enter or a click on the first vertex closes it (Esc cancels)",
      freehand: "Drag around the region",
      line: "Drag to measure a distance",
    } as Record<string, string>,
    show: "Show annotations (a)",
    hide: "Hide annotations (a)",
    undo: "Undo",
    undoHint: "Undo the last annotation change (Ctrl+Z)",
    label: "Label",
    colour: "Colour",
    comment: "Comment",
    delete: "Delete",
    deleteHint: "Delete this annotation (Del)",
    noLabel: "(no label)",
    empty: "No annotations yet: pick a tool above and draw on the slide.",
    count: (n: number) => `${n} annotation${n === 1 ? "" : "s"}`,
    area: "Area",
    length: "Length",
    zoomTo: (label: string) => `Zoom to ${label}`,
    exportQupath: "Export (QuPath)",
    exportHint: "Download every annotation as QuPath GeoJSON",
    import: "Import…",
    importHint: "Add annotations from a QuPath or IAIN GeoJSON file",
    imported: (n: number) => `${n} annotation${n === 1 ? "" : "s"} imported.`,
    saved: "Saved.",
    undone: "Undone.",
    failed: (why: string) => `Not saved: ${why}`,
    loadFailed: (why: string) => `The annotations could not be loaded: ${why}`,
    notJson: "the file is not GeoJSON (not even JSON)",
    gone: "this annotation no longer exists",
    noScale: "pixel size unknown: no measurement",
  },
  /** The layers panel: overlays computed over a slide (AI heatmaps, detections). */
  overlays: {
    panel: "Layers",
    panelLabel: "Layers over the slide",
    collapse: "Hide the layers panel",
    expand: "Show the layers panel",
    show: (name: string) => `Show ${name}`,
    opacity: (name: string) => `Opacity of ${name}`,
    kinds: { heatmap: "Heatmap", features: "Detections" } as Record<string, string>,
    count: (n: number) => `${n.toLocaleString("en-GB")} feature${n === 1 ? "" : "s"}`,
    loading: "Loading…",
    failed: (why: string) => `Layer not loaded: ${why}`,
  },
  /** The compare page: slides side by side; and its entries in the worklist and slide page. */
  compare: {
    title: (n: number) => `Compare ${n} slides`,
    loading: "Loading slides…",
    select: (name: string) => `Select ${name} to compare`,
    selectColumn: "Compare",
    button: (n: number) => (n === 0 ? "Compare" : `Compare (${n})`),
    buttonHint: "Tick 2 to 4 slides, then compare them side by side",
    fromViewer: "Compare…",
    fromViewerHint: "Choose slides to show next to this one",
    lock: "Locked",
    unlocked: "Unlocked",
    lockHint:
      "Locked: pan, zoom and rotation follow the slide you move, keeping their offsets. Unlock to move one slide alone (to set an offset).",
    rotationHint: "Rotation of the active slide (the others follow while locked)",
    align: "Align",
    alignHint: "Line every slide up on the active one: same centre, no offset",
    add: "Add a slide…",
    otherSlides: "Other slides",
    remove: (name: string) => `Remove ${name} from the comparison`,
    openAlone: "Open",
    openAloneHint: "Open this slide alone, at this view",
    relative: "A slide has no pixel size: views line up by slide width, not in µm.",
    tooFew: "Choose 2 to 4 slides to compare.",
    failed: (why: string) => `The slides could not be loaded: ${why}`,
  },
  /** Label and macro photographs of the glass slide, when the hub offers them. */
  associated: {
    button: "Label / Macro",
    hint: "Photographs of the glass slide (label, overview)",
    close: "Close",
    names: { label: "Label", macro: "Macro (overview)", thumbnail: "Thumbnail" } as Record<string, string>,
    failed: (name: string) => `The ${name} image could not be loaded.`,
  },
  /** OpenSeadragon's own button tooltips. */
  osd: {
    FullPage: "Toggle full page",
    Home: "Go home",
    ZoomIn: "Zoom in",
    ZoomOut: "Zoom out",
  } as Record<string, string>,
  units: {
    micrometre: "µm",
    millimetre: "mm",
    pixels: "px",
    perPixel: "µm/px",
    times: "×",
    bytes: ["B", "kB", "MB", "GB", "TB"],
  },
  login: {
    title: "Sign in",
    intro: "Sign in to see your centre's slides and those shared with you.",
    username: "Username",
    password: "Password",
    submit: "Sign in",
    busy: "Signing in…",
    failed: "Wrong username or password.",
    throttled: (seconds: number) => `Too many failed attempts. Try again in ${Math.ceil(seconds / 60)} min.`,
    or: "or",
    oidc: (label: string) => `Sign in with ${label}`,
    /** Why a sign-in through the identity provider failed: the hub's /login?error= codes. */
    oidcErrors: {
      oidc_invalid: "The sign-in could not be verified. Please try again.",
      oidc_expired: "The sign-in took too long or was started in another browser. Please try again.",
      oidc_provider: "The sign-in was cancelled or refused at the identity provider.",
      oidc_unknown_centre:
        "Your account at the identity provider is not linked to an IAIN centre. Ask your administrator.",
      oidc_no_role: "Your account has no IAIN role yet. Ask your administrator.",
      oidc_disabled: "This account is disabled on IAIN. Ask your administrator.",
      oidc_refused: "The sign-in was refused. Ask your administrator.",
      oidc_unavailable: "The identity provider cannot be reached right now. Try again later.",
    } as Record<string, string>,
    oidcFailed: "Signing in through the identity provider failed. Please try again.",
  },
  account: {
    signedInAs: (name: string, centre: string) => `Signed in as ${name} (${centre})`,
    logout: "Sign out",
  },
  share: {
    button: "Share…",
    buttonHint: "Give another centre or a colleague the de-identified view of this slide",
    title: "Share this slide",
    intro:
      "The recipient sees the de-identified view only (no label, macro or annotations), until the grant expires or is revoked.",
    recipient: "Recipient",
    toCentre: "A centre",
    toUser: "A user",
    centre: "Centre",
    username: "Username",
    usernamePlaceholder: "e.g. rouen.pathologist",
    purpose: "Purpose",
    purposes: {
      second_opinion: "Second opinion",
      teaching: "Teaching",
      tumour_board: "Tumour board",
    } as Record<string, string>,
    expires: "Expires on (optional)",
    legalBasis: "Legal basis (optional)",
    legalBasisPlaceholder: "e.g. care agreement C³ 2026",
    submit: "Share",
    close: "Close",
    sharing: "Sharing…",
    shared: (who: string) => `Shared with ${who}.`,
    failed: (why: string) => `Not shared: ${why}`,
    current: "Current grants",
    none: "This slide is not shared.",
    loadFailed: (why: string) => `The grants could not be loaded: ${why}`,
    states: { live: "Live", expired: "Expired", revoked: "Revoked" } as Record<string, string>,
    until: (date: string) => `until ${date}`,
    revoke: "Revoke",
    revokeFailed: (why: string) => `Not revoked: ${why}`,
    sharedWithYou: "Shared with you",
    sharedWithYouHint: (centre: string, purpose: string | null) =>
      `Shared by ${centre}${purpose ? ` for: ${purpose}` : ""}. De-identified view.`,
  },
  errors: {
    network: "the hub cannot be reached",
    http: (status: number) => `HTTP ${status}`,
  },
};

export type Strings = typeof en;

export const fr: Strings = {
  locale: "fr-FR",
  language: {
    other: "en",
    otherName: "English",
    switchHint: "Show in English",
  },
  app: {
    name: "IAIN",
    tagline: "Pathologie numérique · coopération C³",
  },
  worklist: {
    title: "Liste de travail",
    searchLabel: "Rechercher des cas et des lames",
    searchPlaceholder: "Rechercher par référence, organe, coloration ou nom de fichier…",
    loading: "Chargement de la liste de travail…",
    loadFailed: (why) => `Impossible de charger la liste de travail\u00a0: ${why}`,
    empty: "Aucune lame pour l’instant. Pour en importer une\u00a0: iain ingest FICHIER",
    noCases:
      "Aucun cas pour l’instant. Les lames rejoignent leur cas par code-barres, nom de fichier ou le SIL, ou à la main depuis la page de la lame.",
    noMatch: (query) =>
      query
        ? `Aucun cas ni aucune lame ne correspond à «\u00a0${query}\u00a0».`
        : "Aucun cas ni aucune lame ne correspond à ces filtres.",
    noCaseMatch: (query) =>
      query ? `Aucun cas ne correspond à «\u00a0${query}\u00a0».` : "Aucun cas ne correspond à ces filtres.",
    caseCount: (from, to, total) =>
      total === 0
        ? "Aucun cas"
        : from === 1 && to === total
          ? `${countFr(total)} cas`
          : `${countFr(from)}–${countFr(to)} sur ${countFr(total)} cas`,
    sectionCount: (shown, total) =>
      shown === total
        ? `${countFr(total)} lame${total > 1 ? "s" : ""}`
        : `${countFr(shown)} lames sur ${countFr(total)}`,
    filters: "Recherche et filtres",
    status: "État du cas",
    allStatuses: "Tous les états",
    stain: "Coloration",
    stainPlaceholder: "Coloration (HES, HER2…)",
    received: "Reçu",
    since: "Reçu à partir du",
    until: "Reçu jusqu’au",
    sort: "Trier par",
    sorts: { date: "Date de réception", reference: "Référence", status: "État" },
    order: "Ordre",
    orders: {
      date: { desc: "Plus récents d’abord", asc: "Plus anciens d’abord" },
      reference: { asc: "A → Z", desc: "Z → A" },
      status: { asc: "Croissant", desc: "Décroissant" },
    },
    clear: "Effacer",
    clearHint: "Effacer la recherche et les filtres",
    casesTitle: "Cas",
    caseStatuses: {
      received: "Reçu",
      in_progress: "En cours",
      signed_out: "Validé",
    },
    receivedOn: (date) => `Reçu le ${date}`,
    receivedIn: (year) => `Reçu en ${year}`,
    slideCount: (n) => `${n} lame${n > 1 ? "s" : ""}`,
    moreSlides: (n) => `Afficher les ${n} lames`,
    sideBySide: "Ouvrir côte à côte",
    sideBySideHint: (n) => `Afficher côte à côte les ${n} premières lames du cas`,
    noSlides: "Aucune lame pour ce cas.",
    noStain: "Coloration\u00a0?",
    loadMore: "Afficher plus",
    loadingMore: "Chargement…",
    sharedTitle: "Partagées avec moi",
    sharedHint: "Lames que d’autres centres partagent avec vous, dé-identifiées.",
    unlinkedTitle: "À rattacher",
    unlinkedHint:
      "Lames qu’aucun code-barres, nom de fichier ni SIL n’a rattachées à un cas\u00a0: ouvrez-en une pour indiquer son cas, son bloc et sa coloration.",
    sectionFailed: (why) => `Impossible de charger cette liste\u00a0: ${why}`,
    columns: {
      thumbnail: "Aperçu",
      name: "Nom",
      centre: "Centre",
      vendor: "Format du scanner",
      size: "Taille",
      status: "État",
      added: "Ajoutée le",
    },
    open: (name) => `Ouvrir ${name}`,
    notReady: "Cette lame n’est pas encore prête.",
    conversionQueued: "En file d’attente",
    conversionProgress: (percent) =>
      percent === null ? "Conversion…" : `Conversion ${Math.floor(percent)}\u00a0%`,
    conversionFailed: "Échec de la conversion",
    conversionPendingHint:
      "S’ouvre dès maintenant, depuis le fichier d’origine\u00a0; une copie optimisée est en préparation.",
    conversionFailedHint: (why) =>
      `La copie optimisée n’a pas pu être créée${why ? `\u00a0: ${why}` : ""}. La lame s’ouvre depuis son fichier d’origine.`,
  },
  placement: {
    caseOf: (reference) => `Cas ${reference}`,
    blockOf: (block) => `Bloc ${block}`,
    noCase: "Rattachée à aucun cas",
    edit: "Modifier cas / bloc / coloration",
    editHint: "Rattacher cette lame à son cas, avec son bloc et sa coloration",
    title: "Cas, bloc et coloration",
    intro: "Une référence inconnue du centre crée un nouveau cas. Vide\u00a0: la lame quitte son cas.",
    reference: "Référence du cas",
    referencePlaceholder: "ex. B26-00123",
    part: "Prélèvement",
    block: "Bloc",
    level: "Niveau",
    stain: "Coloration",
    stainPlaceholder: "ex. HES, HER2",
    save: "Enregistrer",
    cancel: "Annuler",
    saving: "Enregistrement…",
    saved: "Enregistré.",
    failed: (why) => `Non enregistré\u00a0: ${why}`,
  },
  vendors: { ...en.vendors, "generic-tiff": "TIFF générique" },
  status: {
    ready: "Prête",
    processing: "En cours de traitement",
    failed: "Échec",
  },
  viewer: {
    back: "Liste de travail",
    loading: "Chargement de la lame…",
    notFoundTitle: "Lame introuvable",
    notFound: (id) => `La lame «\u00a0${id}\u00a0» n’existe pas, ou vous n’avez pas accès à cette lame.`,
    loadFailed: (why) => `Impossible de charger la lame\u00a0: ${why}`,
    imageFailed: (why) => `Impossible d’ouvrir l’image de la lame\u00a0: ${why}`,
    backToWorklist: "Retour à la liste de travail",
    deidentified: "Vue dé-identifiée",
    deidentifiedHint:
      "Lame partagée par un autre centre\u00a0: sans son nom, son étiquette, ses annotations ni ses calques.",
    protocol: "Tuiles",
    protocols: { dzi: "DeepZoom", iiif: "IIIF" },
    protocolHint: "Protocole utilisé pour charger les tuiles de l’image",
    magnificationHint: "Grossissement à l’écran (40× ≈ 0,25 µm par pixel)",
    noScale: "Pas d’échelle\u00a0: taille des pixels inconnue",
    scaleHint: "Barre d’échelle",
    toolbar: "Affichage",
    magnifications: "Grossissement",
    magnifyTo: (mag) => `Afficher au ${mag} (comme avec un objectif ${mag})`,
    rotateLeft: "Pivoter de 90° vers la gauche",
    rotateRight: "Pivoter de 90° vers la droite",
    rotation: "Rotation",
    flip: "Retourner (miroir horizontal)",
    copyLink: "Copier le lien",
    copyLinkHint: "Copier un lien vers cette vue exacte",
    linkCopied: "Lien copié",
    help: "Raccourcis clavier",
    close: "Fermer",
    shortcuts: [
      ["+ / −", "Zoomer / dézoomer"],
      ["← ↑ → ↓", "Se déplacer"],
      ["1 … 6", "1,25×, 2,5×, 5×, 10×, 20×, 40×"],
      ["r / R", "Pivoter de 90° à droite / à gauche"],
      ["f", "Miroir horizontal"],
      ["h", "Lame entière (vue initiale)"],
      ["n / p", "Lame suivante / précédente du cas (sinon de la liste de travail)"],
      ["?", "Afficher ou masquer cette aide"],
      ["a", "Afficher ou masquer les annotations"],
      ["o", "Afficher ou masquer les calques (cartes de chaleur, détections)"],
      ["Entrée / Échap", "Terminer / annuler le polygone en cours"],
      ["Suppr", "Supprimer l’annotation sélectionnée"],
      ["Ctrl+Z", "Annuler la dernière modification d’annotation"],
    ],
  },
  annotations: {
    title: "Annotations",
    panel: "Panneau des annotations",
    collapse: "Masquer le panneau des annotations",
    expand: "Afficher le panneau des annotations",
    tools: "Outils d’annotation",
    toolNames: {
      pan: "Sélectionner / déplacer",
      point: "Point",
      rectangle: "Rectangle",
      ellipse: "Ellipse",
      polygon: "Polygone",
      freehand: "Main levée",
      line: "Règle",
    },
    toolHints: {
      pan: "Déplacer la lame ; cliquer sur une annotation pour la sélectionner, la faire glisser ou déplacer ses sommets pour la modifier",
      point: "Cliquer pour placer un point",
      rectangle: "Glisser d’un coin à l’autre",
      ellipse: "Glisser en travers du cadre de l’ellipse",
      polygon:
        "Cliquer chaque sommet ; double-clic, Entrée ou un clic sur le premier sommet le ferme (Échap annule)",
      freehand: "Glisser autour de la région",
      line: "Glisser pour mesurer une distance",
    },
    show: "Afficher les annotations (a)",
    hide: "Masquer les annotations (a)",
    undo: "Annuler",
    undoHint: "Annuler la dernière modification d’annotation (Ctrl+Z)",
    label: "Libellé",
    colour: "Couleur",
    comment: "Commentaire",
    delete: "Supprimer",
    deleteHint: "Supprimer cette annotation (Suppr)",
    noLabel: "(sans libellé)",
    empty: "Aucune annotation : choisissez un outil ci-dessus et dessinez sur la lame.",
    count: (n) => `${n} annotation${n > 1 ? "s" : ""}`,
    area: "Surface",
    length: "Longueur",
    zoomTo: (label) => `Zoomer sur ${label}`,
    exportQupath: "Exporter (QuPath)",
    exportHint: "Télécharger toutes les annotations en GeoJSON QuPath",
    import: "Importer…",
    importHint: "Ajouter les annotations d’un fichier GeoJSON QuPath ou IAIN",
    imported: (n) => `${n} annotation${n > 1 ? "s" : ""} importée${n > 1 ? "s" : ""}.`,
    saved: "Enregistré.",
    undone: "Annulé.",
    failed: (why) => `Non enregistré : ${why}`,
    loadFailed: (why) => `Impossible de charger les annotations : ${why}`,
    notJson: "le fichier n’est pas du GeoJSON (ni même du JSON)",
    gone: "cette annotation n’existe plus",
    noScale: "taille de pixel inconnue : pas de mesure",
  },
  overlays: {
    panel: "Calques",
    panelLabel: "Calques sur la lame",
    collapse: "Masquer le panneau des calques",
    expand: "Afficher le panneau des calques",
    show: (name: string) => `Afficher ${name}`,
    opacity: (name: string) => `Opacité de ${name}`,
    kinds: { heatmap: "Carte de chaleur", features: "Détections" } as Record<string, string>,
    count: (n: number) => `${n.toLocaleString("fr-FR")} objet${n > 1 ? "s" : ""}`,
    loading: "Chargement…",
    failed: (why: string) => `Calque non chargé : ${why}`,
  },
  compare: {
    title: (n) => `Comparer ${n} lames`,
    loading: "Chargement des lames…",
    select: (name) => `Sélectionner ${name} pour comparer`,
    selectColumn: "Comparer",
    button: (n) => (n === 0 ? "Comparer" : `Comparer (${n})`),
    buttonHint: "Cochez 2 à 4 lames pour les comparer côte à côte",
    fromViewer: "Comparer…",
    fromViewerHint: "Choisir des lames à afficher à côté de celle-ci",
    lock: "Verrouillé",
    unlocked: "Déverrouillé",
    lockHint:
      "Verrouillé\u00a0: déplacement, zoom et rotation suivent la lame que vous déplacez, décalages conservés. Déverrouillez pour déplacer une lame seule (pour régler un décalage).",
    rotationHint: "Rotation de la lame active (les autres suivent si verrouillé)",
    align: "Aligner",
    alignHint: "Aligner toutes les lames sur la lame active\u00a0: même centre, sans décalage",
    add: "Ajouter une lame…",
    otherSlides: "Autres lames",
    remove: (name) => `Retirer ${name} de la comparaison`,
    openAlone: "Ouvrir",
    openAloneHint: "Ouvrir cette lame seule, à cette vue",
    relative:
      "Une lame n’a pas de taille de pixel\u00a0: les vues sont alignées selon la largeur des lames, pas en µm.",
    tooFew: "Choisissez 2 à 4 lames à comparer.",
    failed: (why) => `Impossible de charger les lames\u00a0: ${why}`,
  },
  associated: {
    button: "Étiquette / Macro",
    hint: "Photographies de la lame de verre (étiquette, vue d’ensemble)",
    close: "Fermer",
    names: { label: "Étiquette", macro: "Macro (vue d’ensemble)", thumbnail: "Miniature" },
    failed: (name) => `Impossible de charger l’image «\u00a0${name}\u00a0».`,
  },
  osd: {
    FullPage: "Plein écran",
    Home: "Lame entière",
    ZoomIn: "Zoomer",
    ZoomOut: "Dézoomer",
  },
  units: {
    micrometre: "µm",
    millimetre: "mm",
    pixels: "px",
    perPixel: "µm/px",
    times: "×",
    bytes: ["o", "ko", "Mo", "Go", "To"],
  },
  login: {
    title: "Connexion",
    intro: "Connectez-vous pour voir les lames de votre centre et celles partagées avec vous.",
    username: "Identifiant",
    password: "Mot de passe",
    submit: "Se connecter",
    busy: "Connexion…",
    failed: "Identifiant ou mot de passe incorrect.",
    throttled: (seconds) => `Trop de tentatives échouées. Réessayez dans ${Math.ceil(seconds / 60)} min.`,
    or: "ou",
    oidc: (label) => `Se connecter avec ${label}`,
    oidcErrors: {
      oidc_invalid: "La connexion n’a pas pu être vérifiée. Veuillez réessayer.",
      oidc_expired:
        "La connexion a pris trop de temps ou a été commencée dans un autre navigateur. Veuillez réessayer.",
      oidc_provider: "La connexion a été annulée ou refusée par le fournisseur d’identité.",
      oidc_unknown_centre:
        "Votre compte chez le fournisseur d’identité n’est rattaché à aucun centre IAIN. Contactez votre administrateur.",
      oidc_no_role: "Votre compte n’a pas encore de rôle IAIN. Contactez votre administrateur.",
      oidc_disabled: "Ce compte est désactivé sur IAIN. Contactez votre administrateur.",
      oidc_refused: "La connexion a été refusée. Contactez votre administrateur.",
      oidc_unavailable: "Le fournisseur d’identité est injoignable pour le moment. Réessayez plus tard.",
    },
    oidcFailed: "La connexion via le fournisseur d’identité a échoué. Veuillez réessayer.",
  },
  account: {
    signedInAs: (name, centre) => `Connecté·e : ${name} (${centre})`,
    logout: "Se déconnecter",
  },
  share: {
    button: "Partager…",
    buttonHint: "Donner à un autre centre ou à un·e collègue la vue dé-identifiée de cette lame",
    title: "Partager cette lame",
    intro:
      "Le destinataire ne voit que la vue dé-identifiée (ni étiquette, ni macro, ni annotations), jusqu’à l’expiration ou la révocation du partage.",
    recipient: "Destinataire",
    toCentre: "Un centre",
    toUser: "Un·e utilisateur·rice",
    centre: "Centre",
    username: "Identifiant",
    usernamePlaceholder: "ex. rouen.pathologist",
    purpose: "Finalité",
    purposes: {
      second_opinion: "Second avis",
      teaching: "Enseignement",
      tumour_board: "RCP",
    },
    expires: "Expire le (facultatif)",
    legalBasis: "Base légale (facultatif)",
    legalBasisPlaceholder: "ex. convention de soins C³ 2026",
    submit: "Partager",
    close: "Fermer",
    sharing: "Partage en cours…",
    shared: (who) => `Partagée avec ${who}.`,
    failed: (why) => `Non partagée : ${why}`,
    current: "Partages en cours",
    none: "Cette lame n’est pas partagée.",
    loadFailed: (why) => `Les partages n’ont pas pu être chargés : ${why}`,
    states: { live: "Actif", expired: "Expiré", revoked: "Révoqué" },
    until: (date) => `jusqu’au ${date}`,
    revoke: "Révoquer",
    revokeFailed: (why) => `Non révoqué : ${why}`,
    sharedWithYou: "Partagée avec vous",
    sharedWithYouHint: (centre, purpose) =>
      `Partagée par ${centre}${purpose ? ` pour : ${purpose}` : ""}. Vue dé-identifiée.`,
  },
  errors: {
    network: "le serveur IAIN ne répond pas",
    http: (status) => `erreur HTTP ${status}`,
  },
};

export type Language = "en" | "fr";

const LANGUAGE_KEY = "iain.language";

/** The stored choice if any, else the browser's first language that we speak, else English. */
export function preferredLanguage(stored: string | null, browser: readonly string[]): Language {
  if (stored === "en" || stored === "fr") return stored;
  for (const tag of browser) {
    const primary = tag.toLowerCase().split("-")[0];
    if (primary === "fr" || primary === "en") return primary;
  }
  return "en";
}

function storedLanguage(): string | null {
  try {
    return localStorage.getItem(LANGUAGE_KEY);
  } catch {
    return null; // storage disabled: follow the browser
  }
}

/** Stores the choice and reloads the page (same URL, so the same view) in that language. */
export function setLanguage(language: Language): void {
  try {
    localStorage.setItem(LANGUAGE_KEY, language);
  } catch {
    // Not stored: this page still switches.
  }
  window.location.reload();
}

export const language: Language = preferredLanguage(storedLanguage(), navigator.languages);

/** The strings in use. */
export const t: Strings = language === "fr" ? fr : en;
