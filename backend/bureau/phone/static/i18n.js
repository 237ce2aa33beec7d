// Labels in English and Chinese. The browser's language picks one; the switch overrides it and
// the choice is kept (client.js keep.lang). Text with {name} takes values from t()'s second argument.
const LABELS = {
  en: {
    title: "Charging wallet", lang_switch: "中文", loading: "Connecting to the node…",
    setup_title: "Bind this phone to your wallet",
    setup_hint: "Your operator gives you the wallet id and a one-time binding code. The code never leaves this phone.",
    wallet_id: "Wallet id", binding_code: "Binding code", bind: "Bind this phone",
    binding_sent: "Binding sent; waiting for a block…", bound: "This phone is bound to wallet {wallet}.",
    bad_code: "A binding code is 16 letters and digits, like ABCD-EFGH-JKMN-PQRS.",
    bad_wallet: "A wallet id is 1-32 of A-Z a-z 0-9 . _ -",
    bind_timeout: "The node took the binding but the wallet has not answered with this phone's key yet. Try again in a minute.",
    balance: "Balance", available: "Available", held: "Held by open charges", at_height: "at block {height}",
    holds: "Open charges", no_holds: "No open charges.",
    holds_elsewhere: "This node does not keep open charges: {detail}.", hold_line: "{charger}: {amount} held until {until}",
    sessions: "Sessions", no_sessions: "No charging sessions yet.", refresh: "Refresh",
    verified: "✓ verified", not_verified: "✗ not verified", checking: "checking…",
    energy: "Energy", cost: "Cost", period: "Period", price: "Per kWh", subtotal: "Subtotal",
    tariff_in_force: "Tariff {id} v{version}, in force from {from}",
    tariff_from_genesis: "Tariff {id} v{version}, in force since the chain began",
    stop_reason: "Stop", seq: "receipt #{seq}", block: "block {height}",
    kind0: "Critical peak", kind1: "Peak", kind2: "Flat", kind3: "Valley",
    stopL: "stopped at the charger", stopR: "stopped remotely", stopQ: "prepaid amount reached", stopU: "unplugged",
    stopF: "fault", stopP: "power failure", stopT: "time limit",
    start_title: "Start charging at {charger}", cap: "Most to spend (CNY)", start: "Start", cancel: "Cancel",
    start_sent: "The charger has your start; plug in if you have not. The bill shows here when the session ends.",
    start_unbound: "Bind this phone first; then the charge at {charger} can start.",
    bad_cap: "Enter an amount between 1.00 and {max} CNY.",
    offline: "Offline: the phone cannot reach the node ({detail}). Figures shown are the last verified ones.",
    behind: "This node is {n} blocks behind the others (its head {mine}, theirs {theirs}): new figures may be missing.",
    refused: "Refused by the node: {reason} — {detail}",
    other_chain: "This node is on another chain than the one this phone was bound on (genesis {got}, bound {pinned}). Nothing it says is shown.",
    key_backend: "Signatures: {backend}", phone_key: "Phone key", node: "Node {node}",
    meter_signed: "meter-signed readings (OCMF)", ocpp_transaction: "transaction {id}",
    bureau_attested: "readings attested by bureau {bureau}, not signed by the meter",
  },
  zh: {
    title: "充电钱包", lang_switch: "English", loading: "正在连接节点…",
    setup_title: "将本手机绑定到钱包",
    setup_hint: "运营方会给您钱包编号和一次性绑定码。绑定码不会离开本手机。",
    wallet_id: "钱包编号", binding_code: "绑定码", bind: "绑定本手机",
    binding_sent: "绑定已提交，等待出块…", bound: "本手机已绑定钱包 {wallet}。",
    bad_code: "绑定码为 16 位字母和数字，例如 ABCD-EFGH-JKMN-PQRS。",
    bad_wallet: "钱包编号为 1-32 位 A-Z a-z 0-9 . _ -",
    bind_timeout: "节点已收到绑定，但钱包尚未以本手机的密钥应答。请一分钟后重试。",
    balance: "余额", available: "可用", held: "进行中的充电冻结", at_height: "第 {height} 区块",
    holds: "进行中的充电", no_holds: "没有进行中的充电。",
    holds_elsewhere: "本节点不记录进行中的充电：{detail}。", hold_line: "{charger}：冻结 {amount}，至 {until}",
    sessions: "充电记录", no_sessions: "还没有充电记录。", refresh: "刷新",
    verified: "✓ 已验证", not_verified: "✗ 验证失败", checking: "验证中…",
    energy: "电量", cost: "费用", period: "时段", price: "每千瓦时", subtotal: "小计",
    tariff_in_force: "电价 {id} 第 {version} 版，{from} 起生效",
    tariff_from_genesis: "电价 {id} 第 {version} 版，自链创建起生效",
    stop_reason: "结束", seq: "收据 #{seq}", block: "第 {height} 区块",
    kind0: "尖峰", kind1: "高峰", kind2: "平段", kind3: "低谷",
    stopL: "在充电桩结束", stopR: "远程结束", stopQ: "达到预付金额", stopU: "拔枪", stopF: "故障", stopP: "断电",
    stopT: "时长上限",
    start_title: "在 {charger} 开始充电", cap: "最多花费（元）", start: "开始", cancel: "取消",
    start_sent: "充电桩已收到启动指令；请插枪。充电结束后账单显示在这里。",
    start_unbound: "请先绑定本手机，然后即可在 {charger} 开始充电。",
    bad_cap: "请输入 1.00 到 {max} 元之间的金额。",
    offline: "离线：手机无法连接节点（{detail}）。显示的是上次验证过的数据。",
    behind: "该节点落后其他节点 {n} 个区块（本节点 {mine}，其他 {theirs}）：可能缺少最新数据。",
    refused: "节点拒绝：{reason} — {detail}",
    other_chain: "该节点所在的链与本手机绑定时的链不同（创世 {got}，绑定 {pinned}）。不显示它的任何数据。",
    key_backend: "签名：{backend}", phone_key: "手机密钥", node: "节点 {node}",
    meter_signed: "电表签名读数（OCMF）", ocpp_transaction: "交易 {id}",
    bureau_attested: "读数由节点 {bureau} 证明，非电表签名",
  },
};

export const LANGS = Object.keys(LABELS);

export function pickLang(kept) {
  if (LANGS.includes(kept)) return kept;
  return (navigator.languages ?? [navigator.language]).some((l) => /^zh\b/i.test(l)) ? "zh" : "en";
}

let lang = "en";

export function setLang(name) {
  lang = name;
  document.documentElement.lang = name === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  document.title = t("title");
}

export const currentLang = () => lang;

export function t(key, values = {}) {
  const text = LABELS[lang][key] ?? LABELS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}
