// Independent fake SMPP 3.4 SMSC on npm "smpp" (0.5.1). Listens on 127.0.0.1 only.
//   node fake_smsc.js [port ...]      env: RESP_DELAY_MS (submit_sm_resp delay), DLR_DELAY_MS (default 200),
//                                          SMSC_RECORD (a file: one JSON line per submit_sm)
// One SMSC on every port given (default 2776); ci/peers.sh gives otpgate and Kannel one each.
// - bind_* with password "bad"            -> ESME_RINVPASWD (0x0E)
// - submit_sm to a number ending in 429   -> ESME_RTHROTTLED (0x58), no receipt
// - submit_sm to a number ending in 666   -> accepted, receipt stat:UNDELIV (message_state 5)
// - otherwise accepted with a decimal message_id; if registered_delivery & 1 a
//   deliver_sm receipt (esm_class 0x04, Appendix B text + receipted_message_id/message_state TLVs) follows.
// Copied from the shared peers kit; extended with several ports and the SMSC_RECORD file.
const fs = require('fs');
const smpp = require('smpp');
const ports = (process.argv.length > 2 ? process.argv.slice(2) : ['2776']).map((p) => parseInt(p, 10));
const respDelay = parseInt(process.env.RESP_DELAY_MS || '0', 10);
const dlrDelay = parseInt(process.env.DLR_DELAY_MS || '200', 10);
const recordFile = process.env.SMSC_RECORD || '';
let nextId = 5000;

const record = (entry) => {
  if (recordFile) fs.appendFileSync(recordFile, JSON.stringify(entry) + '\n');
};

const serve = (port) => {
  const server = smpp.createServer({ debug: false }, (session) => {
    let systemId = '';
    const bind = (pdu) => {
      const ok = pdu.password !== 'bad';
      systemId = pdu.system_id;
      console.log(`[${port}] bind ${pdu.command} system_id=${pdu.system_id} ok=${ok}`);
      record({ port, event: pdu.command, system_id: pdu.system_id, ok });
      session.send(pdu.response(ok ? { system_id: 'NODESMSC' } : { command_status: smpp.ESME_RINVPASWD }));
      if (!ok) session.close();
    };
    session.on('bind_transceiver', bind);
    session.on('bind_transmitter', bind);
    session.on('bind_receiver', bind);
    session.on('enquire_link', (pdu) => session.send(pdu.response()));
    session.on('unbind', (pdu) => { session.send(pdu.response()); session.close(); });
    session.on('submit_sm', (pdu) => {
      const dest = pdu.destination_addr;
      const sm = pdu.short_message || {};
      const entry = {
        port, event: 'submit_sm', system_id: systemId, source: pdu.source_addr, dest,
        data_coding: pdu.data_coding, esm_class: pdu.esm_class,
        registered_delivery: pdu.registered_delivery,
        udh: (sm.udh || []).map((u) => Buffer.from(u).toString('hex')),
        message: typeof sm.message === 'string' ? sm.message : Buffer.from(sm.message || []).toString('hex'),
      };
      if (dest.endsWith('429')) {
        console.log(`[${port}] submit_sm ${pdu.source_addr}->${dest} THROTTLED`);
        record({ ...entry, status: 'THROTTLED' });
        return session.send(pdu.response({ command_status: smpp.ESME_RTHROTTLED }));
      }
      const id = String(nextId++);
      record({ ...entry, id });
      setTimeout(() => session.send(pdu.response({ message_id: id })), respDelay);
      console.log(`[${port}] submit_sm ${pdu.source_addr}->${dest} dcs=${pdu.data_coding} rd=${pdu.registered_delivery} id=${id}`);
      if (pdu.registered_delivery & 1) {
        const ok = !dest.endsWith('666');
        const d = new Date().toISOString().replace(/[-T:]/g, '').slice(2, 12);
        setTimeout(() => session.deliver_sm({
          source_addr: dest, destination_addr: pdu.source_addr, esm_class: 0x04,
          short_message: `id:${id} sub:001 dlvrd:${ok ? '001' : '000'} submit date:${d} done date:${d} stat:${ok ? 'DELIVRD' : 'UNDELIV'} err:${ok ? '000' : '001'} text:`,
          receipted_message_id: id, message_state: ok ? 2 : 5,
        }, (resp) => console.log(`[${port}] deliver_sm receipt id=${id} acked status=${resp.command_status}`)), respDelay + dlrDelay);
      }
    });
    session.on('error', (e) => console.log(`[${port}] session error`, e.message));
  });
  server.listen(port, '127.0.0.1', () => console.log(`node fake SMSC listening on 127.0.0.1:${port}`));
};

ports.forEach(serve);
