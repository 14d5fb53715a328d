/**
 * The one locale table of the access-request life cycle (contract §6), shared by the emails
 * (src/mail) and the client's grant pages (src/producers/http/grants.ts): what the client reads
 * in the request email, the reminder and on the page behind the link is worded from the same
 * entries, in the client's locale; what the partner is told (granted, declined, expired, access
 * ending) in the partner's. Five locales: en, sv, de, it, pt. Durations and instants are
 * formatted with `Intl` in the same locale.
 */
export type Locale = 'en' | 'sv' | 'de' | 'it' | 'pt';
export const locales: readonly Locale[] = ['en', 'sv', 'de', 'it', 'pt'];
export const isLocale = (v: unknown): v is Locale => typeof v === 'string' && (locales as readonly string[]).includes(v);
/** A stored locale as a supported one (English when unknown or absent). */
export const localeOf = (v: unknown): Locale => (isLocale(v) ? v : 'en');

/**
 * The best supported locale of an `Accept-Language` header (for a page that knows no client, such
 * as an unknown link), by quality, then order; English when none fits.
 */
export function localeFromAcceptLanguage(header: string | undefined): Locale {
  if (!header) return 'en';
  const ranked = header.slice(0, 500).split(',').map((part, i) => {
    const [tag = '', ...params] = part.trim().split(';');
    const q = params.map((p) => /^\s*q=([0-9.]+)\s*$/.exec(p)?.[1]).find((x) => x !== undefined);
    return { lang: tag.trim().toLowerCase().split('-')[0] ?? '', q: q === undefined ? 1 : Number(q), i };
  }).filter((x) => x.q > 0).sort((a, b) => b.q - a.q || a.i - b.i);
  return ranked.map((r) => r.lang).find(isLocale) ?? 'en';
}

/** A length of time in words, in the locale ("14 days", "14 Tage", "43 sekunder"): decimals of a day read as hours, minutes or seconds. */
export function formatDuration(locale: Locale, days: number): string {
  const secs = Math.max(0, days * 86_400);
  const [value, unit] = secs >= 86_400 ? [secs / 86_400, 'day'] : secs >= 3600 ? [secs / 3600, 'hour'] : secs >= 60 ? [secs / 60, 'minute'] : [secs, 'second'];
  return new Intl.NumberFormat(locale, { style: 'unit', unit, unitDisplay: 'long', maximumFractionDigits: 0 }).format(Math.max(1, Math.round(value)));
}

/**
 * "In" a length of time, in the locale's grammar ("in 14 days", "om 14 dagar", "in 14 Tagen",
 * "tra 14 giorni", "em 14 dias"): decimals of a day read as hours, minutes or seconds.
 */
export function formatIn(locale: Locale, days: number): string {
  const secs = Math.max(0, days * 86_400);
  const [value, unit]: [number, Intl.RelativeTimeFormatUnit] = secs >= 86_400 ? [secs / 86_400, 'day'] : secs >= 3600 ? [secs / 3600, 'hour'] : secs >= 60 ? [secs / 60, 'minute'] : [secs, 'second'];
  return relativeFormat(locale).format(Math.max(1, Math.round(value)), unit);
}

/** One formatter per locale: building an Intl formatter costs far more than using one (every request email formats its expiry). */
const relativeFormats = new Map<Locale, Intl.RelativeTimeFormat>();
function relativeFormat(locale: Locale): Intl.RelativeTimeFormat {
  let f = relativeFormats.get(locale);
  if (!f) relativeFormats.set(locale, (f = new Intl.RelativeTimeFormat(locale, { numeric: 'always' })));
  return f;
}

/** An instant in words, in the locale, in UTC ("December 24, 2026 at 6:00 AM UTC"). */
export function formatInstant(locale: Locale, at: Date): string {
  return `${new Intl.DateTimeFormat(locale, { dateStyle: 'long', timeStyle: 'short', timeZone: 'UTC' }).format(at)} UTC`;
}

/** One locale's words. Functions take names already formatted; the caller escapes for HTML. */
export interface Messages {
  /** The language's name in that language. */
  languageName: string;
  /** The request email (the client is asked to grant one or more employees access). */
  request: {
    subject: (partner: string, employee: string) => string;
    greeting: (client: string) => string;
    body: (partner: string, employee: string) => string;
    action: string;
    /** `inTime`: formatted with {@link formatIn} ("in 14 days"). */
    expiry: (inTime: string) => string;
    ignore: string;
    /** What the link's page offers. */
    choice: string;
    /** A request naming several employees (each with its own link). */
    subjectMany: (partner: string, n: number) => string;
    bodyMany: (partner: string) => string;
    /** The digest's one link that grants every person it names. */
    actionAll: string;
  };
  /** The reminder to the client, before a pending request expires. */
  reminder: {
    subject: (partner: string, employee: string) => string;
    body: (partner: string, employee: string) => string;
    /** `inTime`: when the request expires, formatted with {@link formatIn}. */
    expiresIn: (inTime: string) => string;
  };
  /** The client's pages behind the link. */
  page: {
    confirmTitle: string;
    /** Which partner asks access for whom, to which account. */
    confirmAsk: (partner: string, employee: string, client: string) => string;
    confirmExplain: string;
    grant: string;
    decline: string;
    grantedTitle: string;
    grantedText: (employee: string, client: string) => string;
    declinedTitle: string;
    declinedText: (partner: string, employee: string) => string;
    usedTitle: string;
    usedText: (partner: string, employee: string) => string;
    expiredTitle: string;
    expiredText: (partner: string, employee: string) => string;
    withdrawnTitle: string;
    withdrawnText: (partner: string, employee: string) => string;
    unknownTitle: string;
    unknownText: string;
    close: string;
    /** The page of a digest's "grant all" link. */
    confirmAllAsk: (partner: string, client: string) => string;
    confirmAllExplain: string;
    grantAll: string;
    grantedAllText: (client: string) => string;
    allUsedText: (partner: string) => string;
  };
  /** What the partner is told (to its notifyEmail, in its locale). */
  partner: {
    greeting: (partner: string) => string;
    grantedSubject: (client: string, employee: string) => string;
    grantedBody: (client: string, employee: string) => string;
    declinedSubject: (client: string, employee: string) => string;
    declinedBody: (client: string, employee: string) => string;
    expiredSubject: (client: string, employee: string) => string;
    expiredBody: (client: string, employee: string) => string;
    endedSubject: (client: string, employee: string) => string;
    endedBody: (client: string, employee: string, at: string) => string;
    endingSubject: (client: string, employee: string, at: string) => string;
    endingBody: (client: string, employee: string, at: string) => string;
    askAgain: string;
    extendHint: string;
  };
}

const en: Messages = {
  languageName: 'English',
  request: {
    subject: (p, e) => `${p} asks for access for ${e}`,
    greeting: (c) => `Hello ${c},`,
    body: (p, e) => `Your partner ${p} would like ${e} to get access to your account.`,
    action: 'Grant access',
    expiry: (d) => `This link works once and expires ${d}.`,
    ignore: 'If you did not expect this request, you can ignore this email.',
    choice: 'The link opens a page where you grant or decline the request.',
    subjectMany: (p, n) => `${p} asks for access for ${n} people`,
    bodyMany: (p) => `Your partner ${p} would like these people to get access to your account. Each link works for one person:`,
    actionAll: 'Grant access to all of them',
  },
  reminder: {
    subject: (p, e) => `Reminder: ${p} asks for access for ${e}`,
    body: (p, e) => `Your partner ${p} is still waiting for your answer: should ${e} get access to your account?`,
    expiresIn: (d) => `The request expires ${d}.`,
  },
  page: {
    confirmTitle: 'Grant access?',
    confirmAsk: (p, e, c) => `${p} asks that ${e} get access to the account of ${c}.`,
    confirmExplain: '“Grant access” gives this person access to your account; “Decline” tells the partner that you said no.',
    grant: 'Grant access',
    decline: 'Decline',
    grantedTitle: 'Access granted',
    grantedText: (e, c) => `${e} now has access to the account of ${c}.`,
    declinedTitle: 'Request declined',
    declinedText: (p, e) => `${e} does not get access. ${p} is told that you declined.`,
    usedTitle: 'Link already used',
    usedText: (p, e) => `This request of ${p} for ${e} has already been answered.`,
    expiredTitle: 'Link expired',
    expiredText: (p, e) => `This request of ${p} for ${e} has expired. Ask ${p} to send a new request.`,
    withdrawnTitle: 'Request withdrawn',
    withdrawnText: (p, e) => `This request of ${p} for ${e} is no longer open: it was withdrawn or replaced by a newer one. Use the link in the newest email.`,
    unknownTitle: 'Link not valid',
    unknownText: 'This link is not valid. Check that you opened the whole link from the email.',
    close: 'You can close this page.',
    confirmAllAsk: (p, c) => `${p} asks that these people get access to the account of ${c}:`,
    confirmAllExplain: '“Grant access to all” gives each of them access to your account. To decline someone, use that person’s own link in the email.',
    grantAll: 'Grant access to all',
    grantedAllText: (c) => `These people now have access to the account of ${c}:`,
    allUsedText: (p) => `These requests of ${p} have already been answered, or are no longer open.`,
  },
  partner: {
    greeting: (p) => `Hello ${p},`,
    grantedSubject: (c, e) => `${c} granted access to ${e}`,
    grantedBody: (c, e) => `${c} granted ${e} access to their account.`,
    declinedSubject: (c, e) => `${c} declined access for ${e}`,
    declinedBody: (c, e) => `${c} declined your request that ${e} get access to their account.`,
    expiredSubject: (c, e) => `Access request for ${e} to ${c} expired`,
    expiredBody: (c, e) => `${c} did not answer your request that ${e} get access to their account in time. The request has expired.`,
    endedSubject: (c, e) => `Access of ${e} to ${c} has ended`,
    endedBody: (c, e, at) => `The time-bound access of ${e} to the account of ${c} ended on ${at}.`,
    endingSubject: (c, e, at) => `Access of ${e} to ${c} ends on ${at}`,
    endingBody: (c, e, at) => `The time-bound access of ${e} to the account of ${c} ends on ${at}.`,
    askAgain: 'You can send the request again (access.resend).',
    extendHint: 'To keep it, extend it (access.extend).',
  },
};

const sv: Messages = {
  languageName: 'Svenska',
  request: {
    subject: (p, e) => `${p} ber om åtkomst för ${e}`,
    greeting: (c) => `Hej ${c},`,
    body: (p, e) => `Din partner ${p} vill att ${e} får åtkomst till ert konto.`,
    action: 'Ge åtkomst',
    expiry: (d) => `Länken fungerar en gång och upphör ${d}.`,
    ignore: 'Om du inte väntade dig denna begäran kan du ignorera detta mejl.',
    choice: 'Länken öppnar en sida där du godkänner eller avböjer begäran.',
    subjectMany: (p, n) => `${p} ber om åtkomst för ${n} personer`,
    bodyMany: (p) => `Din partner ${p} vill att dessa personer får åtkomst till ert konto. Varje länk gäller en person:`,
    actionAll: 'Ge alla åtkomst',
  },
  reminder: {
    subject: (p, e) => `Påminnelse: ${p} ber om åtkomst för ${e}`,
    body: (p, e) => `Din partner ${p} väntar fortfarande på ditt svar: ska ${e} få åtkomst till ert konto?`,
    expiresIn: (d) => `Begäran upphör ${d}.`,
  },
  page: {
    confirmTitle: 'Ge åtkomst?',
    confirmAsk: (p, e, c) => `${p} ber att ${e} får åtkomst till kontot för ${c}.`,
    confirmExplain: 'Med ”Ge åtkomst” får personen åtkomst till ert konto; med ”Avböj” får partnern veta att du sa nej.',
    grant: 'Ge åtkomst',
    decline: 'Avböj',
    grantedTitle: 'Åtkomst beviljad',
    grantedText: (e, c) => `${e} har nu åtkomst till kontot för ${c}.`,
    declinedTitle: 'Begäran avböjd',
    declinedText: (p, e) => `${e} får inte åtkomst. ${p} får veta att du avböjde.`,
    usedTitle: 'Länken är redan använd',
    usedText: (p, e) => `Denna begäran från ${p} för ${e} är redan besvarad.`,
    expiredTitle: 'Länken har upphört',
    expiredText: (p, e) => `Denna begäran från ${p} för ${e} har upphört. Be ${p} att skicka en ny begäran.`,
    withdrawnTitle: 'Begäran återkallad',
    withdrawnText: (p, e) => `Denna begäran från ${p} för ${e} är inte längre öppen: den har återkallats eller ersatts av en nyare. Använd länken i det senaste mejlet.`,
    unknownTitle: 'Ogiltig länk',
    unknownText: 'Denna länk är inte giltig. Kontrollera att du öppnade hela länken från mejlet.',
    close: 'Du kan stänga denna sida.',
    confirmAllAsk: (p, c) => `${p} ber att dessa personer får åtkomst till kontot för ${c}:`,
    confirmAllExplain: '”Ge alla åtkomst” ger var och en av dem åtkomst till ert konto. Vill du avböja någon, använd den personens egen länk i mejlet.',
    grantAll: 'Ge alla åtkomst',
    grantedAllText: (c) => `Dessa personer har nu åtkomst till kontot för ${c}:`,
    allUsedText: (p) => `Dessa förfrågningar från ${p} är redan besvarade eller inte längre öppna.`,
  },
  partner: {
    greeting: (p) => `Hej ${p},`,
    grantedSubject: (c, e) => `${c} gav ${e} åtkomst`,
    grantedBody: (c, e) => `${c} gav ${e} åtkomst till sitt konto.`,
    declinedSubject: (c, e) => `${c} avböjde åtkomst för ${e}`,
    declinedBody: (c, e) => `${c} avböjde er begäran om att ${e} ska få åtkomst till deras konto.`,
    expiredSubject: (c, e) => `Begäran om åtkomst för ${e} till ${c} har upphört`,
    expiredBody: (c, e) => `${c} besvarade inte i tid er begäran om att ${e} ska få åtkomst till deras konto. Begäran har upphört.`,
    endedSubject: (c, e) => `Åtkomsten för ${e} till ${c} har upphört`,
    endedBody: (c, e, at) => `Den tidsbegränsade åtkomsten för ${e} till kontot för ${c} upphörde ${at}.`,
    endingSubject: (c, e, at) => `Åtkomsten för ${e} till ${c} upphör ${at}`,
    endingBody: (c, e, at) => `Den tidsbegränsade åtkomsten för ${e} till kontot för ${c} upphör ${at}.`,
    askAgain: 'Ni kan skicka begäran igen (access.resend).',
    extendHint: 'För att behålla den, förläng den (access.extend).',
  },
};

const de: Messages = {
  languageName: 'Deutsch',
  request: {
    subject: (p, e) => `${p} bittet um Zugriff für ${e}`,
    greeting: (c) => `Hallo ${c},`,
    body: (p, e) => `Ihr Partner ${p} möchte, dass ${e} Zugriff auf Ihr Konto erhält.`,
    action: 'Zugriff gewähren',
    expiry: (d) => `Dieser Link funktioniert einmal und läuft ${d} ab.`,
    ignore: 'Wenn Sie diese Anfrage nicht erwartet haben, können Sie diese E-Mail ignorieren.',
    choice: 'Der Link öffnet eine Seite, auf der Sie die Anfrage annehmen oder ablehnen.',
    subjectMany: (p, n) => `${p} bittet um Zugriff für ${n} Personen`,
    bodyMany: (p) => `Ihr Partner ${p} möchte, dass diese Personen Zugriff auf Ihr Konto erhalten. Jeder Link gilt für eine Person:`,
    actionAll: 'Allen Zugriff gewähren',
  },
  reminder: {
    subject: (p, e) => `Erinnerung: ${p} bittet um Zugriff für ${e}`,
    body: (p, e) => `Ihr Partner ${p} wartet noch auf Ihre Antwort: Soll ${e} Zugriff auf Ihr Konto erhalten?`,
    expiresIn: (d) => `Die Anfrage läuft ${d} ab.`,
  },
  page: {
    confirmTitle: 'Zugriff gewähren?',
    confirmAsk: (p, e, c) => `${p} bittet darum, dass ${e} Zugriff auf das Konto von ${c} erhält.`,
    confirmExplain: 'Mit „Zugriff gewähren“ erhält diese Person Zugriff auf Ihr Konto; mit „Ablehnen“ erfährt der Partner, dass Sie abgelehnt haben.',
    grant: 'Zugriff gewähren',
    decline: 'Ablehnen',
    grantedTitle: 'Zugriff gewährt',
    grantedText: (e, c) => `${e} hat jetzt Zugriff auf das Konto von ${c}.`,
    declinedTitle: 'Anfrage abgelehnt',
    declinedText: (p, e) => `${e} erhält keinen Zugriff. ${p} erfährt, dass Sie abgelehnt haben.`,
    usedTitle: 'Link bereits verwendet',
    usedText: (p, e) => `Diese Anfrage von ${p} für ${e} wurde bereits beantwortet.`,
    expiredTitle: 'Link abgelaufen',
    expiredText: (p, e) => `Diese Anfrage von ${p} für ${e} ist abgelaufen. Bitten Sie ${p}, eine neue Anfrage zu senden.`,
    withdrawnTitle: 'Anfrage zurückgezogen',
    withdrawnText: (p, e) => `Diese Anfrage von ${p} für ${e} ist nicht mehr offen: Sie wurde zurückgezogen oder durch eine neuere ersetzt. Verwenden Sie den Link in der neuesten E-Mail.`,
    unknownTitle: 'Link ungültig',
    unknownText: 'Dieser Link ist nicht gültig. Prüfen Sie, ob Sie den ganzen Link aus der E-Mail geöffnet haben.',
    close: 'Sie können diese Seite schließen.',
    confirmAllAsk: (p, c) => `${p} bittet darum, dass diese Personen Zugriff auf das Konto von ${c} erhalten:`,
    confirmAllExplain: '„Allen Zugriff gewähren“ gibt jeder dieser Personen Zugriff auf Ihr Konto. Um jemanden abzulehnen, verwenden Sie den eigenen Link dieser Person in der E-Mail.',
    grantAll: 'Allen Zugriff gewähren',
    grantedAllText: (c) => `Diese Personen haben jetzt Zugriff auf das Konto von ${c}:`,
    allUsedText: (p) => `Diese Anfragen von ${p} wurden bereits beantwortet oder sind nicht mehr offen.`,
  },
  partner: {
    greeting: (p) => `Hallo ${p},`,
    grantedSubject: (c, e) => `${c} hat ${e} Zugriff gewährt`,
    grantedBody: (c, e) => `${c} hat ${e} Zugriff auf das eigene Konto gewährt.`,
    declinedSubject: (c, e) => `${c} hat den Zugriff für ${e} abgelehnt`,
    declinedBody: (c, e) => `${c} hat Ihre Anfrage abgelehnt, dass ${e} Zugriff auf das eigene Konto erhält.`,
    expiredSubject: (c, e) => `Zugriffsanfrage für ${e} bei ${c} abgelaufen`,
    expiredBody: (c, e) => `${c} hat Ihre Anfrage, dass ${e} Zugriff auf das eigene Konto erhält, nicht rechtzeitig beantwortet. Die Anfrage ist abgelaufen.`,
    endedSubject: (c, e) => `Der Zugriff von ${e} auf ${c} ist beendet`,
    endedBody: (c, e, at) => `Der befristete Zugriff von ${e} auf das Konto von ${c} endete am ${at}.`,
    endingSubject: (c, e, at) => `Der Zugriff von ${e} auf ${c} endet am ${at}`,
    endingBody: (c, e, at) => `Der befristete Zugriff von ${e} auf das Konto von ${c} endet am ${at}.`,
    askAgain: 'Sie können die Anfrage erneut senden (access.resend).',
    extendHint: 'Um ihn zu behalten, verlängern Sie ihn (access.extend).',
  },
};

const it: Messages = {
  languageName: 'Italiano',
  request: {
    subject: (p, e) => `${p} chiede l'accesso per ${e}`,
    greeting: (c) => `Ciao ${c},`,
    body: (p, e) => `Il tuo partner ${p} vorrebbe che ${e} avesse accesso al tuo account.`,
    action: "Concedi l'accesso",
    expiry: (d) => `Questo link funziona una sola volta e scade ${d}.`,
    ignore: 'Se non ti aspettavi questa richiesta, puoi ignorare questa email.',
    choice: 'Il link apre una pagina in cui puoi accettare o rifiutare la richiesta.',
    subjectMany: (p, n) => `${p} chiede l'accesso per ${n} persone`,
    bodyMany: (p) => `Il tuo partner ${p} vorrebbe che queste persone avessero accesso al tuo account. Ogni link vale per una persona:`,
    actionAll: 'Concedi l’accesso a tutti',
  },
  reminder: {
    subject: (p, e) => `Promemoria: ${p} chiede l'accesso per ${e}`,
    body: (p, e) => `Il tuo partner ${p} attende ancora la tua risposta: ${e} deve avere accesso al tuo account?`,
    expiresIn: (d) => `La richiesta scade ${d}.`,
  },
  page: {
    confirmTitle: "Concedere l'accesso?",
    confirmAsk: (p, e, c) => `${p} chiede che ${e} abbia accesso all'account di ${c}.`,
    confirmExplain: "Con «Concedi l'accesso» questa persona ottiene l'accesso al tuo account; con «Rifiuta» il partner viene informato che hai detto di no.",
    grant: "Concedi l'accesso",
    decline: 'Rifiuta',
    grantedTitle: 'Accesso concesso',
    grantedText: (e, c) => `${e} ora ha accesso all'account di ${c}.`,
    declinedTitle: 'Richiesta rifiutata',
    declinedText: (p, e) => `${e} non riceve l'accesso. ${p} viene informato che hai rifiutato.`,
    usedTitle: 'Link già utilizzato',
    usedText: (p, e) => `Questa richiesta di ${p} per ${e} ha già ricevuto una risposta.`,
    expiredTitle: 'Link scaduto',
    expiredText: (p, e) => `Questa richiesta di ${p} per ${e} è scaduta. Chiedi a ${p} di inviare una nuova richiesta.`,
    withdrawnTitle: 'Richiesta ritirata',
    withdrawnText: (p, e) => `Questa richiesta di ${p} per ${e} non è più aperta: è stata ritirata o sostituita da una più recente. Usa il link dell'email più recente.`,
    unknownTitle: 'Link non valido',
    unknownText: "Questo link non è valido. Verifica di aver aperto il link completo dall'email.",
    close: 'Puoi chiudere questa pagina.',
    confirmAllAsk: (p, c) => `${p} chiede che queste persone abbiano accesso all’account di ${c}:`,
    confirmAllExplain: '“Concedi l’accesso a tutti” dà a ciascuna di loro accesso al tuo account. Per rifiutare qualcuno, usa il link personale di quella persona nell’email.',
    grantAll: 'Concedi l’accesso a tutti',
    grantedAllText: (c) => `Queste persone ora hanno accesso all’account di ${c}:`,
    allUsedText: (p) => `Queste richieste di ${p} hanno già ricevuto una risposta o non sono più aperte.`,
  },
  partner: {
    greeting: (p) => `Ciao ${p},`,
    grantedSubject: (c, e) => `${c} ha concesso l'accesso a ${e}`,
    grantedBody: (c, e) => `${c} ha concesso a ${e} l'accesso al proprio account.`,
    declinedSubject: (c, e) => `${c} ha rifiutato l'accesso per ${e}`,
    declinedBody: (c, e) => `${c} ha rifiutato la tua richiesta che ${e} abbia accesso al proprio account.`,
    expiredSubject: (c, e) => `Richiesta di accesso per ${e} a ${c} scaduta`,
    expiredBody: (c, e) => `${c} non ha risposto in tempo alla tua richiesta che ${e} abbia accesso al proprio account. La richiesta è scaduta.`,
    endedSubject: (c, e) => `L'accesso di ${e} a ${c} è terminato`,
    endedBody: (c, e, at) => `L'accesso a tempo di ${e} all'account di ${c} è terminato il ${at}.`,
    endingSubject: (c, e, at) => `L'accesso di ${e} a ${c} termina il ${at}`,
    endingBody: (c, e, at) => `L'accesso a tempo di ${e} all'account di ${c} termina il ${at}.`,
    askAgain: 'Puoi inviare di nuovo la richiesta (access.resend).',
    extendHint: 'Per mantenerlo, prolungalo (access.extend).',
  },
};

const pt: Messages = {
  languageName: 'Português',
  request: {
    subject: (p, e) => `${p} pede acesso para ${e}`,
    greeting: (c) => `Olá ${c},`,
    body: (p, e) => `O seu parceiro ${p} gostaria que ${e} tivesse acesso à sua conta.`,
    action: 'Conceder acesso',
    expiry: (d) => `Este link funciona uma vez e expira ${d}.`,
    ignore: 'Se não esperava este pedido, pode ignorar este email.',
    choice: 'O link abre uma página onde pode aceitar ou recusar o pedido.',
    subjectMany: (p, n) => `${p} pede acesso para ${n} pessoas`,
    bodyMany: (p) => `O seu parceiro ${p} gostaria que estas pessoas tivessem acesso à sua conta. Cada link vale para uma pessoa:`,
    actionAll: 'Conceder acesso a todos',
  },
  reminder: {
    subject: (p, e) => `Lembrete: ${p} pede acesso para ${e}`,
    body: (p, e) => `O seu parceiro ${p} ainda aguarda a sua resposta: ${e} deve ter acesso à sua conta?`,
    expiresIn: (d) => `O pedido expira ${d}.`,
  },
  page: {
    confirmTitle: 'Conceder acesso?',
    confirmAsk: (p, e, c) => `${p} pede que ${e} tenha acesso à conta de ${c}.`,
    confirmExplain: 'Com «Conceder acesso», esta pessoa obtém acesso à sua conta; com «Recusar», o parceiro fica a saber que disse que não.',
    grant: 'Conceder acesso',
    decline: 'Recusar',
    grantedTitle: 'Acesso concedido',
    grantedText: (e, c) => `${e} tem agora acesso à conta de ${c}.`,
    declinedTitle: 'Pedido recusado',
    declinedText: (p, e) => `${e} não recebe acesso. ${p} é informado de que recusou.`,
    usedTitle: 'Link já utilizado',
    usedText: (p, e) => `Este pedido de ${p} para ${e} já foi respondido.`,
    expiredTitle: 'Link expirado',
    expiredText: (p, e) => `Este pedido de ${p} para ${e} expirou. Peça a ${p} que envie um novo pedido.`,
    withdrawnTitle: 'Pedido retirado',
    withdrawnText: (p, e) => `Este pedido de ${p} para ${e} já não está aberto: foi retirado ou substituído por um mais recente. Use o link do email mais recente.`,
    unknownTitle: 'Link inválido',
    unknownText: 'Este link não é válido. Verifique se abriu o link completo do email.',
    close: 'Pode fechar esta página.',
    confirmAllAsk: (p, c) => `${p} pede que estas pessoas tenham acesso à conta de ${c}:`,
    confirmAllExplain: '“Conceder acesso a todos” dá a cada uma delas acesso à sua conta. Para recusar alguém, use o link próprio dessa pessoa no email.',
    grantAll: 'Conceder acesso a todos',
    grantedAllText: (c) => `Estas pessoas têm agora acesso à conta de ${c}:`,
    allUsedText: (p) => `Estes pedidos de ${p} já foram respondidos ou já não estão abertos.`,
  },
  partner: {
    greeting: (p) => `Olá ${p},`,
    grantedSubject: (c, e) => `${c} concedeu acesso a ${e}`,
    grantedBody: (c, e) => `${c} concedeu a ${e} acesso à sua conta.`,
    declinedSubject: (c, e) => `${c} recusou o acesso para ${e}`,
    declinedBody: (c, e) => `${c} recusou o seu pedido para que ${e} tenha acesso à sua conta.`,
    expiredSubject: (c, e) => `O pedido de acesso para ${e} a ${c} expirou`,
    expiredBody: (c, e) => `${c} não respondeu a tempo ao seu pedido para que ${e} tenha acesso à sua conta. O pedido expirou.`,
    endedSubject: (c, e) => `O acesso de ${e} a ${c} terminou`,
    endedBody: (c, e, at) => `O acesso temporário de ${e} à conta de ${c} terminou a ${at}.`,
    endingSubject: (c, e, at) => `O acesso de ${e} a ${c} termina a ${at}`,
    endingBody: (c, e, at) => `O acesso temporário de ${e} à conta de ${c} termina a ${at}.`,
    askAgain: 'Pode enviar o pedido novamente (access.resend).',
    extendHint: 'Para o manter, prolongue-o (access.extend).',
  },
};

/** Every locale's words. */
export const messages: Readonly<Record<Locale, Messages>> = { en, sv, de, it, pt };

/** The words of a stored locale (English when unknown). */
export const messagesFor = (locale: unknown): Messages => messages[localeOf(locale)];
