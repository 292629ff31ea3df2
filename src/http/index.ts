/** The HTTP/1.1 upgrade layer: request-head parsing, upgrade validation, rejections and responses. */
export {
  countHeader,
  getHeader,
  getHeaderList,
  RequestHeadParser,
  requestHeadBytes,
  type HeadLimits,
  type ParsedHead,
  type RequestHead,
} from './request-head.js';
export {
  HttpReject,
  REJECT_STATUS,
  reject,
  APP_REJECT_REASON,
  rejectHandshakeTimeout,
  rejectOrigin,
  rejectServerFull,
  type RejectReason,
} from './reject.js';
export { httpResponse, rejectResponse, STATUS_TEXT, switchingProtocolsResponse } from './response.js';
export { isWebSocketUpgrade, splitTarget, validateUpgrade, type UpgradeRequest } from './upgrade.js';
