import { html, jsonBlock, type Html } from './html.js';
import { languageNames, locales, REMOVE_WORD, type Formats, type Locale, type Strings } from './i18n.js';
import type { ClientDetail, ClientSummary, CommandStatus, Conflict, CreditMonth, Dashboard, Employee, Person, Renewal } from './api.js';
import { assetUrl } from './assets.js';

/** What every page needs: the language, and for a signed-in person the partner and the form tokens. */
export interface Chrome {
  t: Strings;
  f: Formats;
  lang: Locale;
  /** The current page with `?lang=` set, for the language switcher. */
  langHref: (lang: Locale) => string;
  session?: {
    partnerId: string;
    csrf: string;
    /** `employees:read`: the person may see who the partner's employees are (and email addresses at all). */
    canPeople: boolean;
    /** `commands:write`: the person may act. */
    canWrite: boolean;
    /** A fresh idempotency key for each rendered form. */
    newKey: () => string;
  };
}

export type Tab = 'employees' | 'clients' | 'tier' | 'alerts' | 'team';

const EMAIL = /[^\s<>@"']+@[^\s<>@"']+\.[A-Za-z]{2,}/g;

export const partnerBase = (partnerId: string) => `/app/partners/${encodeURIComponent(partnerId)}`;

interface LayoutOptions {
  title: string;
  current?: Tab;
  body: Html;
  chart?: boolean;
}

export function layout(c: Chrome, o: LayoutOptions): Html {
  const { t, session } = c;
  const base = session ? partnerBase(session.partnerId) : '';
  const tabs: [Tab, string][] = [
    ...(session?.canPeople ? ([['employees', t.tabs.employees]] as [Tab, string][]) : []),
    ['clients', t.tabs.clients],
    ['tier', t.tabs.tier],
    ['alerts', t.tabs.alerts],
    ['team', t.tabs.team],
  ];
  return html`<!doctype html>
<html lang="${c.lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${o.title} · ${t.appName}</title>
<link rel="stylesheet" href="${assetUrl('app.css')}">
${o.chart ? html`<link rel="stylesheet" href="${assetUrl('uplot.min.css')}"><script src="${assetUrl('uplot.iife.min.js')}" defer></script>` : ''}
<script src="${assetUrl('app.js')}" defer></script>
</head>
<body>
<a class="skip-link" href="#main">${t.skip}</a>
<header class="site-header">
  <p class="brand">${t.appName}${session ? html` <span class="partner">· ${t.partner(session.partnerId)}</span>` : ''}</p>
  <nav aria-label="${t.navLanguage}" class="languages">
    <ul>${locales.map((l) => html`<li><a href="${c.langHref(l)}" lang="${l}" hreflang="${l}"${l === c.lang ? html` aria-current="true"` : ''}>${languageNames[l]}</a></li>`)}</ul>
  </nav>
  ${session ? html`<form method="post" action="/app/sign-out" class="sign-out"><input type="hidden" name="_csrf" value="${session.csrf}"><button type="submit" class="secondary">${t.signOut}</button></form>` : ''}
</header>
${session ? html`<nav aria-label="${t.navMain}" class="main-nav"><ul>${tabs.map(([tab, label]) => html`<li><a href="${base}/${tab}" data-tab="${tab}"${tab === o.current ? html` aria-current="page"` : ''}>${label}</a></li>`)}</ul></nav>` : ''}
<main id="main" tabindex="-1">
<h1>${o.title}</h1>
${o.body}
</main>
</body>
</html>`;
}

/** Hidden fields of every action form: CSRF token, a fresh idempotency key, and where to go back to. */
function formMeta(c: Chrome, back: string): Html {
  const s = c.session!;
  return html`<input type="hidden" name="_csrf" value="${s.csrf}"><input type="hidden" name="idem" value="${s.newKey()}"><input type="hidden" name="back" value="${back}">`;
}

const badge = (t: Strings, state: string) => html`<span class="badge badge-${state}">${t.state[state] ?? state}</span>`;
const orUnknown = (t: Strings, v: string | number | null | undefined | Html) =>
  v === null || v === undefined || v === '' ? html`<span class="unknown">${t.common.notKnown}</span>` : v;
const yesNo = (t: Strings, v: boolean) => (v ? t.common.yes : t.common.no);

/** The REMOVE confirmation: a text field and a button that JavaScript keeps disabled until the word is typed (the server checks too). */
function confirmRemove(t: Strings, id: string, label: string): Html {
  return html`<div class="field">
    <label for="${id}">${t.employees.confirm}</label>
    <input id="${id}" name="confirm" type="text" autocomplete="off" spellcheck="false" required data-confirm-word="${REMOVE_WORD}" aria-describedby="${id}-hint">
    <p id="${id}-hint" class="hint">${t.employees.confirmHint}</p>
  </div>
  <button type="submit" class="danger" data-confirm-button>${label}</button>`;
}

export function signInPage(c: Chrome, o: { csrf: string; error?: string; notice?: string; askPartner?: boolean; partnerId?: string }): Html {
  const { t } = c;
  return layout(c, {
    title: t.signIn.title,
    body: html`
${o.notice ? html`<p class="notice" role="status">${o.notice}</p>` : ''}
${o.error ? html`<p class="error" role="alert" id="sign-in-error">${o.error}</p>` : ''}
<p>${t.signIn.intro}</p>
<form method="post" action="/app/sign-in" class="stack">
  <input type="hidden" name="_csrf" value="${o.csrf}">
  <input type="hidden" name="lang" value="${c.lang}">
  <div class="field">
    <label for="token">${t.signIn.token}</label>
    <input id="token" name="token" type="password" autocomplete="off" required maxlength="256"${o.error ? html` aria-describedby="sign-in-error"` : ''}>
  </div>
  <div class="field">
    <label for="partnerId">${t.signIn.partner}</label>
    <input id="partnerId" name="partnerId" type="text" autocomplete="off" maxlength="128" value="${o.partnerId ?? ''}" aria-describedby="partnerId-hint"${o.askPartner ? html` required` : ''}>
    <p id="partnerId-hint" class="hint">${t.signIn.partnerHint}</p>
  </div>
  <button type="submit">${t.signIn.submit}</button>
</form>`,
  });
}

export function errorPage(c: Chrome, o: { message: string; code?: string; detail?: string; back?: string; signIn?: boolean }): Html {
  const { t } = c;
  return layout(c, {
    title: t.error.title,
    body: html`
<p class="error" role="alert">${o.message}${o.code ? html` <code>${o.code}</code>` : ''}</p>
${o.detail ? html`<p>${o.detail}</p>` : ''}
${o.back ? html`<p><a href="${o.back}">${t.common.back}</a></p>` : ''}
${o.signIn ? html`<p><a href="/app/sign-in">${t.signIn.title}</a></p>` : ''}`,
  });
}

export function employeesPage(c: Chrome, o: { employees: Employee[]; clientNames: Map<string, string>; nextHref?: string }): Html {
  const { t, session } = c;
  const s = session!;
  const base = partnerBase(s.partnerId);
  const back = `${base}/employees`;
  const clientLabel = (hubId: string) => o.clientNames.get(hubId) ?? hubId;
  const cards = o.employees.map((e, i) => {
    const who = e.name ?? e.email;
    const live = e.clients.filter((x) => x.access === 'pending' || x.access === 'active');
    return html`<li class="card" data-employee="${e.email}">
  <h2 id="emp-${i}">${who}</h2>
  <dl class="facts">
    <div><dt>${t.common.email}</dt><dd>${e.email}</dd></div>
    <div><dt>${t.common.status}</dt><dd>${e.tagged ? t.employees.tagged : t.employees.untagged} · ${badge(t, e.status)}</dd></div>
  </dl>
  ${e.clients.length
    ? html`<table>
    <caption>${t.employees.clientsOf(who)}</caption>
    <thead><tr><th scope="col">${t.common.client}</th><th scope="col">${t.common.access}</th></tr></thead>
    <tbody>${e.clients.map((x) => html`<tr data-client="${x.hubId}" data-access="${x.access}"><td><a href="${base}/clients/${encodeURIComponent(x.hubId)}">${clientLabel(x.hubId)}</a> <span class="muted">${x.hubId}</span></td><td>${badge(t, x.access)}</td></tr>`)}</tbody>
  </table>`
    : html`<p class="muted">${t.employees.noClients}</p>`}
  ${s.canWrite && e.status === 'active'
    ? html`<p class="actions"><a class="button" href="${base}/employees/assign?email=${encodeURIComponent(e.email)}" aria-label="${t.employees.assignFor(who)}">${t.employees.assign}</a></p>`
    : ''}
  ${s.canWrite && live.length
    ? html`<details class="dialog">
    <summary>${t.employees.remove}</summary>
    <form method="post" action="${base}/actions/revoke" class="stack">
      ${formMeta(c, back)}
      <input type="hidden" name="employeeEmails" value="${e.email}">
      <fieldset>
        <legend>${t.employees.removePick}</legend>
        ${live.map((x, j) => html`<div class="check"><input type="checkbox" id="rm-${i}-${j}" name="clientHubIds" value="${x.hubId}"${live.length === 1 ? html` checked` : ''}><label for="rm-${i}-${j}">${clientLabel(x.hubId)} (${x.hubId})</label></div>`)}
      </fieldset>
      ${confirmRemove(t, `rm-confirm-${i}`, t.employees.remove)}
    </form>
  </details>`
    : ''}
</li>`;
  });
  return layout(c, {
    title: t.employees.title,
    current: 'employees',
    body: html`
<p>${t.employees.count(o.employees.length)}</p>
${o.employees.length ? html`<ul class="cards">${cards}</ul>` : html`<p>${t.employees.none}</p>`}
${o.nextHref ? html`<p><a href="${o.nextHref}">${t.common.nextPage}</a></p>` : ''}`,
  });
}

export function assignPage(c: Chrome, o: { employee: Employee; clients: ClientSummary[] }): Html {
  const { t, session } = c;
  const base = partnerBase(session!.partnerId);
  const who = o.employee.name ?? o.employee.email;
  const states = new Map(o.employee.clients.map((x) => [x.hubId, x.access]));
  const active = o.clients.filter((x) => x.status === 'active');
  return layout(c, {
    title: t.assign.title(who),
    current: 'employees',
    body: html`
<form method="post" action="${base}/actions/assign" class="stack dialog-page">
  ${formMeta(c, `${base}/employees`)}
  <input type="hidden" name="employeeEmails" value="${o.employee.email}">
  <fieldset>
    <legend>${t.assign.pick}</legend>
    ${active.length
      ? active.map((x, i) => {
        const state = states.get(x.hubId);
        return html`<div class="check"><input type="checkbox" id="as-${i}" name="clientHubIds" value="${x.hubId}"><label for="as-${i}">${x.name} <span class="muted">${x.hubId}</span>${state ? html` · ${t.assign.now(t.state[state] ?? state)}` : ''}</label></div>`;
      })
      : html`<p>${t.assign.noActiveClients}</p>`}
  </fieldset>
  <div class="field">
    <label for="hubIds">${t.assign.typeHubIds}</label>
    <input id="hubIds" name="hubIds" type="text" autocomplete="off" aria-describedby="hubIds-hint">
    <p id="hubIds-hint" class="hint">${t.assign.typeHint}</p>
  </div>
  <div class="actions"><button type="submit">${t.assign.submit}</button> <a href="${base}/employees">${t.common.cancel}</a></div>
</form>`,
  });
}

export function clientsPage(c: Chrome, o: { clients: ClientSummary[]; nextHref?: string }): Html {
  const { t, f, session } = c;
  const base = partnerBase(session!.partnerId);
  const count = (x: ClientSummary) => x.employeeCount ?? x.employees?.filter((e) => e.access === 'pending' || e.access === 'active').length ?? null;
  return layout(c, {
    title: t.clients.title,
    current: 'clients',
    body: o.clients.length
      ? html`<div class="table-wrap"><table class="clients">
  <caption class="visually-hidden">${t.clients.title}</caption>
  <thead><tr><th scope="col">${t.common.client}</th><th scope="col">${t.common.products}</th><th scope="col">${t.common.status}</th><th scope="col" class="num">${t.common.mrr}</th><th scope="col">${t.common.managed}</th><th scope="col" class="num">${t.clients.employeesWithAccess}</th></tr></thead>
  <tbody>${o.clients.map((x) => html`<tr data-client="${x.hubId}" data-status="${x.status}">
    <th scope="row"><a href="${base}/clients/${encodeURIComponent(x.hubId)}">${x.name}</a> <span class="muted">${x.hubId}</span></th>
    <td>${x.products?.length ? x.products.join(', ') : orUnknown(t, null)}</td>
    <td>${badge(t, x.status)}</td>
    <td class="num">${orUnknown(t, f.number(x.mrr))}</td>
    <td>${yesNo(t, x.managed)}</td>
    <td class="num">${orUnknown(t, count(x))}</td>
  </tr>`)}</tbody>
</table></div>
${o.nextHref ? html`<p><a href="${o.nextHref}">${t.common.nextPage}</a></p>` : ''}`
      : html`<p>${t.clients.none}</p>`,
  });
}

const personText = (c: Chrome, p: Person | string | null | undefined) => {
  if (!p) return null;
  if (typeof p === 'string') return c.session?.canPeople || !p.includes('@') ? p : null;
  return c.session?.canPeople ? `${p.name} <${p.email}>` : p.name;
};

export function clientPanelPage(c: Chrome, o: { client: ClientDetail; employees: Employee[] | null }): Html {
  const { t, f, session } = c;
  const s = session!;
  const x = o.client;
  const base = partnerBase(s.partnerId);
  const back = `${base}/clients/${encodeURIComponent(x.hubId)}`;
  const info = x.clientInfo ?? {};
  const company = info.companyInfo ?? null;
  const ren = x.renewals ?? {};
  const usage = x.portalUsage ?? null;
  const withAccess = (x.employees ?? []).filter((e) => e.access === 'pending' || e.access === 'active');
  const names = new Map((o.employees ?? []).map((e) => [e.email, e.name ?? e.email]));
  const holding = new Set(withAccess.map((e) => e.email));
  const addable = (o.employees ?? []).filter((e) => e.tagged && e.status === 'active' && !holding.has(e.email));
  const active = x.status === 'active';
  const list = (items: string[] | undefined | null) => (items?.length ? html`<ul class="plain">${items.map((i) => html`<li>${i}</li>`)}</ul>` : orUnknown(t, null));
  const sub = (v: { name: string; mrr?: number; endsOn?: string; startsOn?: string } | null | undefined) =>
    v ? [v.name, v.mrr !== undefined ? `${t.common.mrr} ${f.number(v.mrr)}` : null, v.endsOn ? t.panel.endsOn(f.date(v.endsOn)!) : null, v.startsOn ? t.panel.startsOn(f.date(v.startsOn)!) : null].filter(Boolean).join(' · ') : null;
  const fact = (label: string, value: string | number | null | undefined | Html) => html`<div><dt>${label}</dt><dd>${orUnknown(t, value)}</dd></div>`;

  const panels: [string, string, Html][] = [
    ['info', t.panel.info, html`<dl class="facts">
      ${fact(t.common.status, badge(t, x.status))}
      ${fact(t.common.products, x.products?.length ? x.products.join(', ') : null)}
      ${fact(t.common.mrr, f.number(x.mrr))}
      ${fact(t.common.managed, yesNo(t, x.managed))}
      ${fact(t.panel.domain, company?.domain)}
      ${fact(t.panel.industry, company?.industry)}
      ${fact(t.panel.companySize, f.number(company?.employees))}
      ${fact(t.panel.country, company?.country)}
      ${fact(t.panel.city, company?.city)}
      ${fact(t.panel.contactTier, info.contactTier)}
      ${fact(t.panel.emailTier, info.emailTier)}
      ${s.canPeople ? fact(t.panel.contactEmail, x.contactEmail) : ''}
    </dl>
    <h3>${t.panel.subscriptions}</h3>
    ${info.subscriptions?.length
      ? html`<table><caption class="visually-hidden">${t.panel.subscriptions}</caption><thead><tr><th scope="col">${t.panel.product}</th><th scope="col">${t.panel.tier}</th><th scope="col" class="num">${t.common.mrr}</th></tr></thead>
        <tbody>${info.subscriptions.map((v) => html`<tr><td>${v.product}</td><td>${orUnknown(t, v.tier)}</td><td class="num">${orUnknown(t, f.number(v.mrr))}</td></tr>`)}</tbody></table>`
      : html`<p>${orUnknown(t, null)}</p>`}`],
    ['renewals', t.panel.renewals, html`<dl class="facts">
      ${fact(t.panel.renewalDate, f.date(ren.renewalDate ?? x.renewalDate))}
      ${fact(t.panel.renewalOwner, personText(c, ren.renewalOwner))}
      ${fact(t.panel.renewalRep, personText(c, ren.renewalRep))}
      ${fact(t.panel.currentSubscription, sub(ren.currentSubscription))}
      ${fact(t.panel.renewalSubscription, sub(ren.renewalSubscription))}
    </dl>`],
    ['usage', t.panel.usage, html`<dl class="facts">
      ${fact(t.common.products, list(usage?.products))}
      ${fact(t.panel.apps, list(usage?.apps))}
    </dl>`],
    ['engagement', t.panel.engagement, html`<dl class="facts">
      ${fact(t.panel.score, x.platformEngagementScore === null || x.platformEngagementScore === undefined ? null : t.panel.scoreOf(f.number(x.platformEngagementScore)!))}
    </dl>`],
  ];

  const people = s.canPeople
    ? html`${withAccess.length
      ? html`<table><caption class="visually-hidden">${t.panel.people}</caption><thead><tr><th scope="col">${t.common.employee}</th><th scope="col">${t.common.access}</th></tr></thead>
        <tbody>${withAccess.map((e) => html`<tr data-employee="${e.email}" data-access="${e.access}"><td>${names.get(e.email) ?? e.email} <span class="muted">${e.email}</span></td><td>${badge(t, e.access)}</td></tr>`)}</tbody></table>`
      : html`<p>${t.panel.nobody}</p>`}
      ${s.canWrite && withAccess.length
        ? html`<details class="dialog"><summary>${t.employees.remove}</summary>
        <form method="post" action="${base}/actions/revoke" class="stack">
          ${formMeta(c, back)}
          <input type="hidden" name="clientHubIds" value="${x.hubId}">
          <fieldset><legend>${t.panel.removePick}</legend>
          ${withAccess.map((e, j) => html`<div class="check"><input type="checkbox" id="prm-${j}" name="employeeEmails" value="${e.email}"${withAccess.length === 1 ? html` checked` : ''}><label for="prm-${j}">${names.get(e.email) ?? e.email} (${e.email})</label></div>`)}
          </fieldset>
          ${confirmRemove(t, 'prm-confirm', t.employees.remove)}
        </form></details>`
        : ''}`
    : html`<p>${t.panel.peopleCount(x.employeeCount ?? withAccess.length)}</p>
      ${s.canWrite && (x.employeeCount ?? withAccess.length) > 0
        ? html`<details class="dialog"><summary>${t.employees.remove}</summary>
        <form method="post" action="${base}/actions/revoke" class="stack">
          ${formMeta(c, back)}
          <input type="hidden" name="clientHubIds" value="${x.hubId}">
          <div class="field"><label for="prm-emails">${t.panel.removeType}</label><input id="prm-emails" name="emails" type="text" autocomplete="off" required></div>
          ${confirmRemove(t, 'prm-confirm', t.employees.remove)}
        </form></details>`
        : ''}`;

  return layout(c, {
    title: x.name,
    current: 'clients',
    body: html`
<p class="lead"><span class="muted">${t.common.hubId} ${x.hubId}</span> · ${badge(t, x.status)}</p>
${active ? '' : html`<p class="notice">${t.panel.terminated}</p>`}
<div class="tabs" data-tabs>
  <nav aria-label="${t.panel.tabsLabel}" class="tab-list"><ul>${panels.map(([id, label]) => html`<li><a href="#tab-${id}" id="tab-${id}-link">${label}</a></li>`)}</ul></nav>
  ${panels.map(([id, label, body]) => html`<section class="tab-panel" id="tab-${id}" aria-labelledby="tab-${id}-title"><h2 id="tab-${id}-title">${label}</h2>${body}</section>`)}
</div>
<section aria-labelledby="people-title">
  <h2 id="people-title">${t.panel.people}</h2>
  ${people}
</section>
${s.canWrite && active
  ? html`<section aria-labelledby="add-title">
  <h2 id="add-title">${t.panel.addEmployee}</h2>
  <form method="post" action="${base}/actions/assign" class="stack">
    ${formMeta(c, back)}
    <input type="hidden" name="clientHubIds" value="${x.hubId}">
    ${s.canPeople
      ? html`<fieldset><legend>${t.panel.pickEmployees}</legend>
      ${addable.length ? addable.map((e, j) => html`<div class="check"><input type="checkbox" id="add-${j}" name="employeeEmails" value="${e.email}"><label for="add-${j}">${e.name ?? e.email} (${e.email})</label></div>`) : html`<p>${t.panel.allHaveAccess}</p>`}
      </fieldset>`
      : ''}
    <div class="field">
      <label for="add-emails">${t.panel.typeEmails}</label>
      <input id="add-emails" name="emails" type="text" autocomplete="off" aria-describedby="add-emails-hint">
      <p id="add-emails-hint" class="hint">${t.panel.typeEmailsHint}</p>
    </div>
    <button type="submit">${t.panel.addSubmit}</button>
  </form>
</section>
<section aria-labelledby="terminate-title">
  <h2 id="terminate-title">${t.panel.terminate}</h2>
  <details class="dialog"><summary>${t.panel.terminate}</summary>
  <form method="post" action="${base}/actions/terminate" class="stack">
    ${formMeta(c, back)}
    <input type="hidden" name="hubId" value="${x.hubId}">
    <p>${t.panel.terminateIntro}</p>
    <div class="check"><input type="checkbox" id="terminate-confirm" name="confirm" value="yes" required><label for="terminate-confirm">${t.panel.terminateConfirm(x.name)}</label></div>
    <button type="submit" class="danger">${t.panel.terminate}</button>
  </form></details>
</section>`
  : ''}`,
  });
}

export function tierPage(c: Chrome, o: { dashboard: Dashboard; months: CreditMonth[]; selected: CreditMonth | null }): Html {
  const { t, f } = c;
  const d = o.dashboard;
  const first = o.months[0]?.month;
  const last = o.months[o.months.length - 1]?.month;
  const chartData = { months: o.months.map((m) => ({ month: m.month, label: f.month(m.month), total: m.total })), seriesLabel: t.tier.total };
  const sel = o.selected;
  const fields: [keyof CreditMonth & string, string][] = [['new', t.tier.new], ['increased', t.tier.increased], ['expired', t.tier.expired], ['decreased', t.tier.decreased], ['total', t.tier.total]];
  return layout(c, {
    title: t.tier.title,
    current: 'tier',
    chart: true,
    body: html`
<section aria-labelledby="tier-now">
  <h2 id="tier-now">${t.tier.yourTier}</h2>
  <dl class="facts">
    <div><dt>${t.tier.current}</dt><dd data-field="tier">${d.tier.current}</dd></div>
    <div><dt>${t.tier.next}</dt><dd data-field="next-tier">${d.tier.next ?? t.tier.topTier}</dd></div>
    <div><dt>${t.tier.creditToNext}</dt><dd data-field="credit-to-next">${orUnknown(t, d.tier.next ? f.number(d.tier.creditToNext) : null)}</dd></div>
    <div><dt>${t.tier.sold}</dt><dd data-field="sold">${orUnknown(t, f.number(d.soldTierCredit))}</dd></div>
    <div><dt>${t.tier.managedMrr}</dt><dd>${orUnknown(t, f.number(d.managedMrr))}</dd></div>
    <div><dt>${t.tier.calculatedAt}</dt><dd>${orUnknown(t, f.dateTime(d.calculatedAt))}</dd></div>
  </dl>
</section>
<section aria-labelledby="tier-chart">
  <h2 id="tier-chart">${t.tier.chart}</h2>
  <figure class="chart-figure">
    <div id="credit-chart" class="chart" role="img" aria-label="${first && last ? t.tier.chartLabel(f.month(first), f.month(last)) : t.tier.chart}"></div>
    ${jsonBlock('credit-data', chartData)}
  </figure>
  <div class="table-wrap"><table id="credit-table">
    <caption>${t.tier.tableCaption}</caption>
    <thead><tr><th scope="col">${t.tier.month}</th>${fields.map(([, label]) => html`<th scope="col" class="num">${label}</th>`)}</tr></thead>
    <tbody>${o.months.map((m) => html`<tr data-month="${m.month}"><th scope="row">${f.month(m.month)}</th>${fields.map(([k]) => html`<td class="num">${f.number(m[k] as number)}</td>`)}</tr>`)}</tbody>
  </table></div>
</section>
<section aria-labelledby="tier-month">
  <h2 id="tier-month">${t.tier.breakdown}</h2>
  <form method="get" action="" class="inline">
    <label for="month">${t.tier.month}</label>
    <select id="month" name="month">${o.months.map((m) => html`<option value="${m.month}"${sel?.month === m.month ? html` selected` : ''}>${f.month(m.month)}</option>`)}</select>
    <button type="submit">${t.tier.show}</button>
  </form>
  ${sel
    ? html`<h3>${t.tier.breakdownOf(f.month(sel.month))}</h3>
  <dl class="facts breakdown" id="month-breakdown" data-month="${sel.month}">
    ${fields.map(([k, label]) => html`<div><dt>${label}</dt><dd data-field="${k}" data-value="${String(sel[k])}">${f.number(sel[k] as number)}</dd></div>`)}
  </dl>`
    : ''}
</section>`,
  });
}

export interface PendingView { hubId: string; clientName: string; email: string | null; requestedAt: string | null; expiresAt: string | null; ageDays: number | null }

export function alertsPage(c: Chrome, o: {
  renewalsCount: number;
  renewals: Renewal[];
  renewalsDerived: boolean;
  pendingCount: number | null;
  pending: PendingView[] | null;
  conflicts: Conflict[] | null;
  clientNames: Map<string, string>;
}): Html {
  const { t, f, session } = c;
  const base = partnerBase(session!.partnerId);
  const clientLink = (hubId: string) => html`<a href="${base}/clients/${encodeURIComponent(hubId)}">${o.clientNames.get(hubId) ?? hubId}</a>`;
  const known = o.pending?.filter((p) => p.ageDays !== null) ?? [];
  const buckets: [string, (d: number) => boolean][] = [
    [t.alerts.buckets.d0, (d) => d < 3],
    [t.alerts.buckets.d3, (d) => d >= 3 && d < 7],
    [t.alerts.buckets.d7, (d) => d >= 7 && d < 14],
    [t.alerts.buckets.d14, (d) => d >= 14],
  ];
  return layout(c, {
    title: t.alerts.title,
    current: 'alerts',
    body: html`
<section aria-labelledby="renewals-title">
  <h2 id="renewals-title">${t.alerts.renewals}</h2>
  <p data-field="renewals-count">${t.alerts.renewalsCount(o.renewalsCount)}</p>
  ${o.renewals.length
    ? html`${o.renewalsDerived ? html`<p class="hint">${t.alerts.renewalsFromList}</p>` : ''}
  <table><caption class="visually-hidden">${t.alerts.renewals}</caption>
    <thead><tr><th scope="col">${t.common.client}</th><th scope="col">${t.panel.renewalDate}</th><th scope="col">${t.panel.renewalOwner}</th><th scope="col">${t.common.products}</th></tr></thead>
    <tbody>${o.renewals.map((r) => html`<tr data-client="${r.hubId}"><td>${clientLink(r.hubId)}</td><td>${orUnknown(t, f.date(r.renewalDate))}</td><td>${orUnknown(t, personText(c, r.renewalOwner))}</td><td>${r.products?.length ? r.products.join(', ') : orUnknown(t, null)}</td></tr>`)}</tbody>
  </table>`
    : ''}
</section>
<section aria-labelledby="pending-title">
  <h2 id="pending-title">${t.alerts.pending}</h2>
  ${o.pendingCount !== null ? html`<p data-field="pending-count">${t.alerts.pendingCount(o.pendingCount)}</p>` : ''}
  ${known.length
    ? html`<ul class="buckets">${buckets.map(([label, test]) => html`<li><span>${label}</span> <strong>${known.filter((p) => test(p.ageDays!)).length}</strong></li>`)}</ul>`
    : ''}
  ${o.pending?.length
    ? html`${known.length < o.pending.length ? html`<p class="hint">${t.alerts.ageUnknown}</p>` : ''}
  <table><caption class="visually-hidden">${t.alerts.pending}</caption>
    <thead><tr><th scope="col">${t.common.client}</th>${session!.canPeople ? html`<th scope="col">${t.common.employee}</th>` : ''}<th scope="col">${t.alerts.age}</th><th scope="col">${t.alerts.requestedAt}</th><th scope="col">${t.alerts.expiresAt}</th></tr></thead>
    <tbody>${o.pending.map((p) => html`<tr data-client="${p.hubId}"><td>${clientLink(p.hubId)}</td>${session!.canPeople ? html`<td>${p.email ?? ''}</td>` : ''}<td>${p.ageDays === null ? orUnknown(t, null) : t.alerts.days(p.ageDays)}</td><td>${orUnknown(t, f.date(p.requestedAt))}</td><td>${orUnknown(t, f.date(p.expiresAt))}</td></tr>`)}</tbody>
  </table>`
    : ''}
</section>
${o.conflicts
  ? html`<section aria-labelledby="conflicts-title">
  <h2 id="conflicts-title">${t.alerts.conflicts}</h2>
  ${o.conflicts.length
    ? html`<p>${t.alerts.conflictIntro}</p>
  <table><caption class="visually-hidden">${t.alerts.conflicts}</caption>
    <thead><tr><th scope="col">${t.common.employee}</th><th scope="col">${t.common.client}</th><th scope="col">${t.alerts.at}</th><th scope="col">${t.alerts.command}</th></tr></thead>
    <tbody>${o.conflicts.map((x) => html`<tr data-client="${x.clientHubId}"><td>${x.email}</td><td>${clientLink(x.clientHubId)}</td><td>${f.dateTime(x.at)}</td><td><a href="${base}/commands/${encodeURIComponent(x.commandId)}?back=${encodeURIComponent(`${base}/alerts`)}"><code>${x.commandId}</code></a></td></tr>`)}</tbody>
  </table>
  <h3>${t.alerts.waysOut}</h3>
  <ol class="ways-out"><li>${t.alerts.way1}</li><li>${t.alerts.way2}</li><li>${t.alerts.way3}</li></ol>`
    : html`<p>${t.alerts.noConflicts}</p>`}
</section>`
  : ''}`,
  });
}

export function teamPage(c: Chrome, o: { team: Dashboard['team'] }): Html {
  const { t, session } = c;
  const s = session!;
  const base = partnerBase(s.partnerId);
  const members: ['channelAccountManager' | 'channelConsultant', string, Person | undefined][] = [
    ['channelAccountManager', t.team.cam, o.team.channelAccountManager],
    ['channelConsultant', t.team.cc, o.team.channelConsultant],
  ];
  const reachable = members.filter(([, , p]) => p);
  return layout(c, {
    title: t.team.title,
    current: 'team',
    body: html`
<ul class="cards team">${members.map(([key, role, p]) => html`<li class="card" data-member="${key}">
  <h2>${role}</h2>
  ${p ? html`<p class="person">${p.name}${s.canPeople ? html`<br><span class="muted">${p.email}</span>` : ''}</p>` : html`<p class="muted">${t.team.notAssigned}</p>`}
</li>`)}</ul>
${s.canWrite
  ? html`<section aria-labelledby="send-title">
  <h2 id="send-title">${t.team.send}</h2>
  ${reachable.length
    ? html`<form method="post" action="${base}/actions/team-email" class="stack">
    ${formMeta(c, `${base}/team`)}
    <div class="field"><label for="to">${t.team.to}</label>
      <select id="to" name="to" required>${reachable.map(([key, role, p]) => html`<option value="${key}">${role}: ${p!.name}</option>`)}</select></div>
    <div class="field"><label for="subject">${t.team.subject}</label><input id="subject" name="subject" type="text" required maxlength="200"></div>
    <div class="field"><label for="body">${t.team.body}</label><textarea id="body" name="body" rows="8" required maxlength="20000"></textarea></div>
    <div class="field"><label for="replyTo">${t.team.replyTo}</label><input id="replyTo" name="replyTo" type="email" autocomplete="email" maxlength="254" aria-describedby="replyTo-hint"><p id="replyTo-hint" class="hint">${t.team.replyToHint}</p></div>
    <button type="submit">${t.team.submit}</button>
  </form>`
    : html`<p>${t.team.nobody}</p>`}
</section>`
  : ''}`,
  });
}

export function resultPage(c: Chrome, o: { status: CommandStatus; back: string; settled: boolean }): Html {
  const { t, session } = c;
  const s = o.status;
  const canPeople = session!.canPeople;
  // Without employees:read no email address shows, not even inside an error message.
  const message = (m: string) => (canPeople ? m : m.replace(EMAIL, '…'));
  const errorText = (e: { code: string; message: string }) => html`<code>${e.code}</code> ${t.codes[e.code] ?? message(e.message)}`;
  return layout(c, {
    title: t.result.type[s.type] ?? s.type,
    body: html`
<p role="status" class="result result-${s.state}" id="command-state" data-state="${s.state}">${t.result.state[s.state] ?? s.state}</p>
${o.settled ? '' : html`<p>${t.result.running}</p><p><a href="" data-auto-reload="3">${t.result.checkAgain}</a></p>`}
${s.error && !s.items?.length ? html`<p class="error" data-code="${s.error.code}">${errorText(s.error)}</p>` : ''}
${s.items?.length
  ? html`<table id="command-items"><caption>${t.result.pairs}</caption>
  <thead><tr><th scope="col">${t.common.client}</th><th scope="col">${t.common.employee}</th><th scope="col">${t.result.outcome}</th></tr></thead>
  <tbody>${s.items.map((i) => html`<tr data-client="${i.clientHubId}" data-outcome="${i.outcome ?? (i.error ? 'refused' : i.state)}"${i.error ? html` data-code="${i.error.code}"` : ''}>
    <td>${i.clientHubId}</td><td>${canPeople ? i.employeeEmail : t.common.anEmployee}</td>
    <td>${i.outcome ? badge(t, i.outcome) : i.error ? html`<span class="badge badge-failed">${t.result.refused}</span> ${errorText(i.error)}` : badge(t, i.state)}</td></tr>`)}</tbody>
</table>`
  : ''}
<p class="muted">${t.result.command(s.commandId)}</p>
<p><a href="${o.back}">${t.common.back}</a></p>`,
  });
}

