/**
 * Every string the viewer shows to a user, in one place: a French translation is a second
 * object of the same type, chosen at start-up.
 */
export const en = {
  locale: "en-GB",
  app: {
    name: "IAIN",
    tagline: "Digital pathology · C³ cooperation",
  },
  worklist: {
    title: "Worklist",
    searchLabel: "Search slides",
    searchPlaceholder: "Search by name or centre…",
    loading: "Loading slides…",
    loadFailed: (why: string) => `The worklist could not be loaded: ${why}`,
    empty: "No slides yet. Ingest one with: iain ingest FILE",
    noMatch: (query: string) => `No slide matches “${query}”.`,
    count: (shown: number, total: number) =>
      shown === total
        ? `${total} slide${total === 1 ? "" : "s"}`
        : `${shown} of ${total} slide${total === 1 ? "" : "s"}`,
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
    protocol: "Tiles",
    protocols: { dzi: "DeepZoom", iiif: "IIIF" },
    protocolHint: "Tile protocol the viewer uses to fetch the image",
    magnificationHint: "Magnification on screen (40× ≈ 0.25 µm per pixel)",
    noScale: "No scale: pixel size unknown",
    scaleHint: "Scale bar",
  },
  units: {
    micrometre: "µm",
    millimetre: "mm",
    pixels: "px",
    perPixel: "µm/px",
    times: "×",
    bytes: ["B", "kB", "MB", "GB", "TB"],
  },
  errors: {
    network: "the hub cannot be reached",
    http: (status: number) => `HTTP ${status}`,
  },
};

export type Strings = typeof en;

/** The strings in use. */
export const t: Strings = en;
