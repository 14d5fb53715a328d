import { decideExtend, decideLinkAnswer, decideResend, linkState, RESEND_THROTTLE_MS, type AssignFacts, type LinkFacts } from '../../src/domain/access.js';
import { DomainError } from '../../src/domain/errors.js';
import { formatDuration, formatIn, localeFromAcceptLanguage, locales, messages, type Locale } from '../../src/i18n/messages.js';
import { renderPartnerNotice, renderReminder, type PartnerNoticeKind } from '../../src/mail/lifecycle-templates.js';
import { renderGrantPage } from '../../src/producers/http/grants.js';

const now = new Date('2026-11-30T12:00:00Z');
const ago = (ms: number) => new Date(now.getTime() - ms);
const later = (ms: number) => new Date(now.getTime() + ms);

describe('linkState and decideLinkAnswer', () => {
  const open: LinkFacts = { tokenSeq: 2, usedAt: null, decided: null, withdrawnAt: null, tokenExpiresAt: later(60_000), access: { state: 'pending', requestSeq: 2, expiresAt: later(60_000) } };
  it.each<[string, Partial<LinkFacts>, string]>([
    ['the pending request of the link', {}, 'open'],
    ['a link used once', { usedAt: ago(1), decided: 'granted' }, 'used'],
    ['a link declined once', { usedAt: ago(1), decided: 'declined' }, 'used'],
    ['a link withdrawn by a newer request', { withdrawnAt: ago(1) }, 'withdrawn'],
    ['a newer request of the pair', { access: { state: 'pending', requestSeq: 3, expiresAt: later(60_000) } }, 'withdrawn'],
    ['a pair that no longer exists', { access: null }, 'withdrawn'],
    ['a revoked pair', { access: { state: 'revoked', requestSeq: 2, expiresAt: later(60_000) } }, 'withdrawn'],
    ['a request past its expiry (the sweep has not run yet)', { access: { state: 'pending', requestSeq: 2, expiresAt: ago(1) } }, 'expired'],
    ['a link past its own expiry', { tokenExpiresAt: ago(1) }, 'expired'],
    ['a request the sweep expired', { access: { state: 'expired', requestSeq: 2, expiresAt: ago(1) } }, 'expired'],
    ['a request granted another way (the platform, a portal-user sync)', { access: { state: 'active', requestSeq: 2, expiresAt: later(60_000) } }, 'used'],
  ])('when the link is %s, then it is %s', (_name, change, expected) => {
    expect(linkState({ ...open, ...change }, now)).toBe(expected);
  });

  it('when an open link is answered, then grant makes the pair active and decline declined; a closed link refuses with its page', () => {
    expect(decideLinkAnswer(open, 'grant', now)).toEqual({ outcome: 'active', state: 'active' });
    expect(decideLinkAnswer(open, 'decline', now)).toEqual({ outcome: 'declined', state: 'declined' });
    expect(decideLinkAnswer({ ...open, decided: 'granted', usedAt: ago(1) }, 'decline', now)).toEqual({ outcome: 'refused', page: 'used' });
  });
});

describe('decideResend', () => {
  const base: AssignFacts = { employee: { tagged: true, status: 'active' }, client: { status: 'active' }, access: null, linkedToOtherPartner: false, isPortalUser: false, issuedAt: null };
  const pair = (state: 'pending' | 'active' | 'declined' | 'expired' | 'revoked', lastEmailMsAgo: number | null = 2 * RESEND_THROTTLE_MS) =>
    ({ state, lastIssuedAt: null, requestSeq: 1, lastEmailAt: lastEmailMsAgo === null ? null : ago(lastEmailMsAgo) });
  const codeOf = (f: () => unknown) => {
    try {
      f();
      return null;
    } catch (err) {
      if (err instanceof DomainError) return err.code;
      throw err;
    }
  };

  it.each<[string, Partial<AssignFacts>, string]>([
    ['pending, emailed two hours ago', { access: pair('pending') }, 'resent'],
    ['declined', { access: pair('declined') }, 'resent'],
    ['expired', { access: pair('expired') }, 'resent'],
    ['pending, emailed ten minutes ago', { access: pair('pending', 600_000) }, 'throttled'],
    ['declined, emailed just under an hour ago', { access: pair('declined', RESEND_THROTTLE_MS - 1) }, 'throttled'],
    ['declined, emailed exactly an hour ago', { access: pair('declined', RESEND_THROTTLE_MS) }, 'resent'],
    ['active', { access: pair('active') }, 'unchanged'],
    ['revoked', { access: pair('revoked') }, 'unchanged'],
    ['never asked', { access: null }, 'unchanged'],
    ['of a partner that asks its clients itself', { access: pair('expired'), manualRequests: true }, 'unchanged'],
    ['older than the last command on the pair', { access: { ...pair('expired'), lastIssuedAt: now }, issuedAt: ago(1) }, 'superseded'],
  ])('when the pair is %s, then it is %s', (_name, change, expected) => {
    expect(decideResend({ ...base, ...change }, now).outcome).toBe(expected);
  });

  it.each<[string, Partial<AssignFacts>, string]>([
    ['linked to another partner now', { access: pair('declined'), linkedToOtherPartner: true }, 'EMAIL_LINKED_TO_OTHER_PARTNER'],
    ['of an untagged employee', { access: pair('expired'), employee: { tagged: false, status: 'active' } }, 'NOT_A_PARTNER_EMPLOYEE'],
    ['of a terminated client', { access: pair('pending'), client: { status: 'terminated' } }, 'CLIENT_TERMINATED'],
    ['of a client without a contact', { access: pair('pending'), clientHasContact: false }, 'NO_CLIENT_CONTACT'],
  ])('when a pair to ask again is %s, then it is refused with %s', (_name, change, code) => {
    expect(codeOf(() => decideResend({ ...base, ...change }, now))).toBe(code);
  });

  it('when a pending pair is linked to another partner (the other request came later), then resending it is no conflict', () => {
    expect(decideResend({ ...base, access: pair('pending'), linkedToOtherPartner: true }, now).outcome).toBe('resent');
  });
});

describe('decideExtend', () => {
  it.each([['pending', 'extended'], ['active', 'extended'], ['declined', 'unchanged'], ['expired', 'unchanged'], ['revoked', 'unchanged']] as const)('when the pair is %s, then it is %s', (state, outcome) => {
    expect(decideExtend({ state, lastIssuedAt: null }, null).outcome).toBe(outcome);
  });
  it('when there is no pair, then it is unchanged', () => {
    expect(decideExtend(null, null).outcome).toBe('unchanged');
  });
});

describe('the locale table', () => {
  it('when the browser asks for languages, then the best supported one is chosen, English when none is', () => {
    expect(localeFromAcceptLanguage('de-CH, de;q=0.9, en;q=0.5')).toBe('de');
    expect(localeFromAcceptLanguage('fr, it;q=0.8, sv;q=0.9')).toBe('sv');
    expect(localeFromAcceptLanguage('fr, es')).toBe('en');
    expect(localeFromAcceptLanguage('pt;q=0, it')).toBe('it');
    expect(localeFromAcceptLanguage(undefined)).toBe('en');
  });

  it('when a duration is a decimal of a day, then it reads in the largest whole unit of the locale', () => {
    expect(formatDuration('en', 14)).toBe('14 days');
    expect(formatDuration('de', 14)).toBe('14 Tage');
    expect(formatDuration('en', 0.0005)).toBe('43 seconds');
    expect(formatDuration('it', 0.5)).toBe('12 ore');
    expect(formatDuration('pt', 1 / 1440)).toBe('1 minuto');
    expect(locales.map((l) => formatIn(l, 14))).toEqual(['in 14 days', 'om 14 dagar', 'in 14 Tagen', 'tra 14 giorni', 'em 14 dias']);
    expect(formatIn('de', 0.0005)).toBe('in 43 Sekunden');
  });

  it('when any entry of a language is the English one, then it is not translated (every language differs from English everywhere but in names)', () => {
    const flatten = (m: unknown, prefix = ''): [string, string][] => Object.entries(m as Record<string, unknown>).flatMap(([k, v]) => {
      if (typeof v === 'string') return [[`${prefix}${k}`, v]];
      if (typeof v === 'function') return [[`${prefix}${k}`, String((v as (...a: string[]) => string)('P', 'E', 'C'))]];
      return flatten(v, `${prefix}${k}.`);
    });
    const en = new Map(flatten(messages.en));
    for (const l of locales.filter((x) => x !== 'en')) {
      const same = flatten(messages[l]).filter(([k, v]) => en.get(k) === v).map(([k]) => k);
      expect({ locale: l, untranslated: same }).toEqual({ locale: l, untranslated: [] });
    }
  });
});

describe('the emails and pages of a request, in all five languages', () => {
  const expected: Record<Locale, { reminder: string; granted: string; ending: string; confirm: string; grant: string; decline: string }> = {
    en: { reminder: 'Reminder: Acme asks for access for Ann', granted: 'Beta & Co granted access to Ann', ending: 'ends on', confirm: 'Grant access?', grant: 'Grant access', decline: 'Decline' },
    sv: { reminder: 'Påminnelse: Acme ber om åtkomst för Ann', granted: 'Beta & Co gav Ann åtkomst', ending: 'upphör', confirm: 'Ge åtkomst?', grant: 'Ge åtkomst', decline: 'Avböj' },
    de: { reminder: 'Erinnerung: Acme bittet um Zugriff für Ann', granted: 'Beta & Co hat Ann Zugriff gewährt', ending: 'endet am', confirm: 'Zugriff gewähren?', grant: 'Zugriff gewähren', decline: 'Ablehnen' },
    it: { reminder: "Promemoria: Acme chiede l'accesso per Ann", granted: "Beta & Co ha concesso l'accesso a Ann", ending: 'termina il', confirm: "Concedere l'accesso?", grant: "Concedi l'accesso", decline: 'Rifiuta' },
    pt: { reminder: 'Lembrete: Acme pede acesso para Ann', granted: 'Beta & Co concedeu acesso a Ann', ending: 'termina a', confirm: 'Conceder acesso?', grant: 'Conceder acesso', decline: 'Recusar' },
  };

  it.each(locales)('when the recipient reads %s, then the reminder, every partner notice and every page are in that language, escaped, with lang', (l) => {
    const e = expected[l];
    const reminder = renderReminder({ locale: l, clientName: 'Beta & Co', partnerName: 'Acme', employee: 'Ann', link: 'http://x.test/v1/grants/tok?a=1&b=2', expiresAt: new Date(now.getTime() + 3 * 86_400_000), now });
    expect(reminder.subject).toBe(e.reminder);
    expect(reminder.text).toContain('http://x.test/v1/grants/tok?a=1&b=2');
    expect(reminder.text).toContain(formatIn(l, 3));
    expect(reminder.html).toContain(`<html lang="${l}">`);
    expect(reminder.html).toContain('Beta &#38; Co');
    expect(reminder.html).toContain('href="http://x.test/v1/grants/tok?a=1&#38;b=2"');
    expect(reminder.html).not.toContain('Beta & Co');

    const notices = (['granted', 'declined', 'expired', 'ended', 'ending'] as PartnerNoticeKind[])
      .map((kind) => renderPartnerNotice({ locale: l, kind, partnerName: 'Acme', clientName: 'Beta & Co', employee: 'Ann', accessUntil: new Date('2026-12-24T06:00:00Z') }));
    expect(notices[0]!.subject).toBe(e.granted);
    expect(notices[4]!.subject).toContain(e.ending);
    expect(new Set(notices.map((n) => n.subject)).size).toBe(5);
    for (const n of notices) {
      expect(n.html).toContain(`<html lang="${l}">`);
      expect(n.text).toContain(messages[l].partner.greeting('Acme'));
    }

    const names = { partner: 'Acme <b>', employee: 'Ann', client: 'Beta & Co' };
    const confirm = renderGrantPage(l, 'confirm', names);
    expect(confirm).toContain(`<html lang="${l}">`);
    expect(confirm).toContain(`<title>${e.confirm.replace("'", '&#39;')}</title>`);
    expect(confirm).toContain(`value="grant" class="grant">${e.grant.replace("'", '&#39;')}</button>`);
    expect(confirm).toContain(`value="decline" class="decline">${e.decline}</button>`);
    expect(confirm).toContain('Acme &#60;b&#62;');
    expect(confirm).not.toContain('<b>');
    const titles = (['granted', 'declined', 'used', 'expired', 'withdrawn', 'unknown'] as const).map((p) => /<title>(.*)<\/title>/.exec(renderGrantPage(l, p, names))![1]);
    expect(new Set(titles).size).toBe(6);
    for (const p of ['granted', 'declined', 'used', 'expired', 'withdrawn', 'unknown'] as const) expect(renderGrantPage(l, p, names)).not.toContain('<form');
  });
});
